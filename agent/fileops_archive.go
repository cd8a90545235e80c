package main

import (
	"archive/tar"
	"bufio"
	"errors"
	"io"
	"os"
	"path"
	"syscall"
	"time"
)

// defaultMaxArchiveEntries bounds archive and extract when the host gives no entry limit.
const defaultMaxArchiveEntries = 1000000

type archiveRequest struct {
	Dir        string   `json:"dir"`
	Paths      []string `json:"paths"`
	MaxBytes   *int64   `json:"maxBytes"`
	MaxEntries *int     `json:"maxEntries"`
}

// archiver writes a tar of paths under dir: depth first, siblings in byte order, symlinks stored as
// symlinks and never followed (only dir itself may be a symlink).
type archiver struct {
	dir        string
	tw         *tar.Writer
	maxBytes   int64
	maxEntries int
	bytes      int64
	entries    int
}

func runArchive(request []byte, _ io.Reader, out *bufio.Writer) error {
	var req archiveRequest
	if err := decodeFileRequest(request, "archive", &req); err != nil {
		return err
	}
	if err := checkAbsPath("dir", req.Dir); err != nil {
		return err
	}
	if req.MaxBytes == nil || *req.MaxBytes < 0 || *req.MaxBytes > maxSafeInteger {
		return fileErrorf(codeInvalidArgument, "archive %s: maxBytes is required and must be in 0..2^53-1", req.Dir)
	}
	maxEntries := defaultMaxArchiveEntries
	if req.MaxEntries != nil {
		maxEntries = *req.MaxEntries
	}
	if maxEntries < 1 || maxEntries > defaultMaxArchiveEntries {
		return fileErrorf(codeInvalidArgument, "archive %s: maxEntries must be in 1..%d", req.Dir, defaultMaxArchiveEntries)
	}
	for _, p := range req.Paths {
		if err := checkRelPath("archive path", p); err != nil {
			return err
		}
	}
	if err := requireDir(req.Dir); err != nil {
		return err
	}
	a := &archiver{dir: req.Dir, tw: tar.NewWriter(out), maxBytes: *req.MaxBytes, maxEntries: maxEntries}
	for _, p := range req.Paths {
		var err error
		if p == "." {
			err = a.addChildren("")
		} else {
			err = a.addPath(p, true)
		}
		if err != nil {
			return err
		}
	}
	return a.tw.Close()
}

// requireDir checks that dir (followed, as the sandbox resolves it) is a directory.
func requireDir(dir string) error {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return fsError("stat", dir, err)
	}
	if entryType(st.Mode) != "dir" {
		return fileErrorf(codeFailedPrecondition, "%s is not a directory", dir)
	}
	return nil
}

// addPath stores rel and, for a directory, everything under it. A path that vanished while the tree
// was read is skipped, unless the host named it (top).
func (a *archiver) addPath(rel string, top bool) error {
	if top {
		if err := requireRealParents(a.dir, rel, false); err != nil {
			return err
		}
	}
	full := path.Join(a.dir, rel)
	var st syscall.Stat_t
	if err := syscall.Lstat(full, &st); err != nil {
		if !top && isNotExist(err) {
			return nil
		}
		return fsError("stat", full, err)
	}
	switch entryType(st.Mode) {
	case "dir":
		hdr := tarHeader(rel+"/", &st)
		hdr.Typeflag = tar.TypeDir
		if err := a.writeHeader(hdr); err != nil {
			return err
		}
		return a.addChildren(rel)
	case "symlink":
		target, err := os.Readlink(full)
		if err != nil {
			return fsError("readlink", full, err)
		}
		hdr := tarHeader(rel, &st)
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
		return a.writeHeader(hdr)
	case "file":
		return a.addFile(rel, full)
	}
	return nil // sockets, devices and FIFOs have no content worth moving
}

// addChildren stores the entries of directory rel ("" is dir itself).
func (a *archiver) addChildren(rel string) error {
	// below dir, a directory swapped for a symlink since the lstat is not descended through
	names, err := sortedNames(path.Join(a.dir, rel), rel != "")
	if err != nil {
		return err
	}
	for _, name := range names {
		if err := a.addPath(path.Join(rel, name), false); err != nil {
			return err
		}
	}
	return nil
}

// addFile stores a regular file, described by fstat of the opened file so header and content agree.
func (a *archiver) addFile(rel, full string) error {
	f, err := os.OpenFile(full, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if isNotExist(err) || errors.Is(err, syscall.ELOOP) {
			return nil // removed or replaced by a symlink since the lstat
		}
		return fsError("open", full, err)
	}
	defer f.Close()
	st, err := fstatFile(f)
	if err != nil {
		return err
	}
	if entryType(st.Mode) != "file" {
		return nil
	}
	if a.bytes+st.Size > a.maxBytes {
		return fileErrorf(codeResourceExhausted, "archive %s: the files exceed the limit of %d bytes", a.dir, a.maxBytes)
	}
	hdr := tarHeader(rel, st)
	hdr.Typeflag, hdr.Size = tar.TypeReg, st.Size
	if err := a.writeHeader(hdr); err != nil {
		return err
	}
	n, err := io.CopyN(a.tw, f, st.Size)
	a.bytes += n
	if errors.Is(err, io.EOF) {
		return fileErrorf(codeInternal, "archive %s: the file shrank while it was read", full)
	}
	if err != nil {
		return fsError("read", full, err)
	}
	return nil
}

func (a *archiver) writeHeader(hdr *tar.Header) error {
	a.entries++
	if a.entries > a.maxEntries {
		return fileErrorf(codeResourceExhausted, "archive %s: more than %d entries", a.dir, a.maxEntries)
	}
	if err := a.tw.WriteHeader(hdr); err != nil {
		return fileErrorf(codeInternal, "archive %s: %s: %v", a.dir, hdr.Name, err)
	}
	return nil
}

// tarHeader carries mode, owner ids and the nanosecond mtime; PAX keeps the nanoseconds and long names.
func tarHeader(name string, st *syscall.Stat_t) *tar.Header {
	return &tar.Header{
		Name:    name,
		Mode:    int64(st.Mode & permBits),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: time.Unix(st.Mtim.Sec, st.Mtim.Nsec),
		Format:  tar.FormatPAX,
	}
}
