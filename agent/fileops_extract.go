package main

import (
	"archive/tar"
	"bufio"
	"errors"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"syscall"
)

// maxTrailingBytes is how much input after the tar's end-of-archive blocks is read and discarded (tar
// writers pad to a record), so the host's last writes are not met by a closed pipe.
const maxTrailingBytes = 1 << 20

type extractRequest struct {
	Dir        string `json:"dir"`
	MaxBytes   *int64 `json:"maxBytes"`
	MaxEntries *int   `json:"maxEntries"`
	// CreateDir makes dir (and missing parents, 0755) first, like mkdir -p
	CreateDir bool `json:"createDir"`
}

// dirMeta is a directory's mode, owner and mtime, applied after every entry is in place (deepest
// first) so that creating children neither changes the mtime nor trips over a read-only mode.
type dirMeta struct {
	rel       string
	mode      uint32
	uid, gid  int
	sec, nsec int64
}

// extractor unpacks a tar into root, never writing through a symlink: every existing component between
// root and an entry must be a real directory.
type extractor struct {
	root       string
	maxBytes   int64
	maxEntries int
	bytes      int64
	entries    int
	asRoot     bool
	files      map[string]bool // regular files this run extracted: the only valid hardlink targets
	dirs       []dirMeta
}

func runExtract(request []byte, stdin io.Reader, out *bufio.Writer) error {
	var req extractRequest
	if err := decodeFileRequest(request, "extract", &req); err != nil {
		return err
	}
	if err := checkAbsPath("dir", req.Dir); err != nil {
		return err
	}
	if req.MaxBytes == nil || *req.MaxBytes < 0 || *req.MaxBytes > maxSafeInteger || req.MaxEntries == nil || *req.MaxEntries < 0 {
		return fileErrorf(codeInvalidArgument, "extract %s: maxBytes (0..2^53-1) and maxEntries (at least 0) are required", req.Dir)
	}
	if req.CreateDir {
		if err := os.MkdirAll(req.Dir, 0o755); err != nil {
			return fileErrorf(codeFailedPrecondition, "extract: cannot create %s: %v", req.Dir, err)
		}
	}
	if err := requireDir(req.Dir); err != nil {
		return err
	}
	e := &extractor{root: req.Dir, maxBytes: *req.MaxBytes, maxEntries: *req.MaxEntries, asRoot: os.Geteuid() == 0, files: map[string]bool{}}
	tr := tar.NewReader(stdin)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fileErrorf(codeInvalidArgument, "extract into %s: not a valid tar stream: %v", req.Dir, err)
		}
		if err := e.extractEntry(hdr, tr); err != nil {
			return err
		}
	}
	if err := e.applyDirMeta(); err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(stdin, maxTrailingBytes))
	return writeJSONLine(out, struct {
		Entries int   `json:"entries"`
		Bytes   int64 `json:"bytes"`
	}{e.entries, e.bytes})
}

func (e *extractor) extractEntry(hdr *tar.Header, content io.Reader) error {
	e.entries++
	if e.entries > e.maxEntries {
		return fileErrorf(codeResourceExhausted, "extract into %s: more than %d entries", e.root, e.maxEntries)
	}
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil // PAX defaults for the whole archive (git archive writes one); nothing to create
	}
	rel, err := tarEntryName(hdr.Name)
	if err != nil {
		return err
	}
	if rel == "." && hdr.Typeflag != tar.TypeDir {
		return fileErrorf(codeInvalidArgument, "tar entry %q: only a directory may name the target itself", hdr.Name)
	}
	if err := e.prepareParents(rel); err != nil {
		return err
	}
	full := path.Join(e.root, rel)
	switch hdr.Typeflag {
	case tar.TypeDir:
		return e.extractDir(rel, full, hdr)
	case tar.TypeReg, tar.TypeRegA:
		return e.extractFile(rel, full, hdr, content)
	case tar.TypeSymlink:
		return e.extractSymlink(rel, full, hdr)
	case tar.TypeLink:
		return e.extractHardlink(rel, full, hdr)
	}
	return fileErrorf(codeInvalidArgument, "tar entry %q: type %q is not supported (only directories, files, symlinks and hardlinks)", hdr.Name, string(hdr.Typeflag))
}

// tarEntryName validates an entry name and returns it relative to the target: clean, no "..", no
// leading "/" ("./" prefixes and a directory's trailing "/" are accepted).
func tarEntryName(name string) (string, error) {
	rel := name
	if strings.HasPrefix(rel, "./") {
		rel = rel[2:]
		if rel == "" {
			rel = "." // "./": the target itself, as `tar -C dir -c .` writes it
		}
	}
	rel = strings.TrimSuffix(rel, "/")
	if err := checkRelPath("tar entry name", rel); err != nil {
		return "", err
	}
	return rel, nil
}

// prepareParents makes sure every component between root and rel is a real directory, creating
// missing ones 0755; a symlink or file there is refused rather than written through.
func (e *extractor) prepareParents(rel string) error {
	return requireRealParents(e.root, rel, true)
}

// clearForEntry removes a file or symlink where a non-directory entry goes; a directory there is refused.
func (e *extractor) clearForEntry(rel, full string) error {
	var st syscall.Stat_t
	err := syscall.Lstat(full, &st)
	if isNotExist(err) {
		return nil
	}
	if err != nil {
		return fsError("stat", full, err)
	}
	if entryType(st.Mode) == "dir" {
		return fileErrorf(codeFailedPrecondition, "tar entry %q: %s is a directory", rel, full)
	}
	delete(e.files, rel)
	if err := syscall.Unlink(full); err != nil {
		return fsError("replace", full, err)
	}
	return nil
}

func (e *extractor) extractDir(rel, full string, hdr *tar.Header) error {
	if rel != "." {
		var st syscall.Stat_t
		err := syscall.Lstat(full, &st)
		switch {
		case isNotExist(err):
			if err := mkdirMode(full, 0o700); err != nil {
				return err
			}
		case err != nil:
			return fsError("stat", full, err)
		case entryType(st.Mode) != "dir":
			return fileErrorf(codeFailedPrecondition, "tar entry %q: %s is a %s, not a directory", hdr.Name, full, entryType(st.Mode))
		}
	}
	mt := hdr.ModTime
	e.dirs = append(e.dirs, dirMeta{rel: rel, mode: uint32(hdr.Mode) & permBits, uid: hdr.Uid, gid: hdr.Gid, sec: mt.Unix(), nsec: int64(mt.Nanosecond())})
	return nil
}

func (e *extractor) extractFile(rel, full string, hdr *tar.Header, content io.Reader) error {
	if hdr.Size < 0 || e.bytes+hdr.Size > e.maxBytes {
		return fileErrorf(codeResourceExhausted, "extract into %s: the files exceed the limit of %d bytes", e.root, e.maxBytes)
	}
	if err := e.clearForEntry(rel, full); err != nil {
		return err
	}
	f, err := os.OpenFile(full, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fsError("create", full, err)
	}
	if err := e.fillFile(f, hdr, content); err != nil {
		f.Close()
		os.Remove(full)
		return err
	}
	if err := f.Close(); err != nil {
		return fsError("write", full, err)
	}
	e.bytes += hdr.Size
	e.files[rel] = true
	return nil
}

// fillFile copies the content, then owner (before the mode: chown clears setuid), mode and mtime.
func (e *extractor) fillFile(f *os.File, hdr *tar.Header, content io.Reader) error {
	if _, err := io.CopyN(f, content, hdr.Size); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fileErrorf(codeInvalidArgument, "tar entry %q: the stream ends inside its content", hdr.Name)
		}
		return fsError("write", f.Name(), err)
	}
	if e.asRoot {
		if err := f.Chown(hdr.Uid, hdr.Gid); err != nil && !ignorableChownError(err) {
			return fsError("chown", f.Name(), err)
		}
	}
	if err := f.Chmod(unixMode(uint32(hdr.Mode) & permBits)); err != nil {
		return fsError("chmod", f.Name(), err)
	}
	return setMtimeFd(f, hdr.ModTime.Unix(), int64(hdr.ModTime.Nanosecond()))
}

func (e *extractor) extractSymlink(rel, full string, hdr *tar.Header) error {
	if hdr.Linkname == "" || strings.IndexByte(hdr.Linkname, 0) >= 0 {
		return fileErrorf(codeInvalidArgument, "tar entry %q: a symlink needs a target without NUL bytes", hdr.Name)
	}
	if err := e.clearForEntry(rel, full); err != nil {
		return err
	}
	if err := os.Symlink(hdr.Linkname, full); err != nil {
		return fsError("create symlink", full, err)
	}
	if e.asRoot {
		if err := os.Lchown(full, hdr.Uid, hdr.Gid); err != nil && !ignorableChownError(err) {
			return fsError("chown", full, err)
		}
	}
	return setMtimeNofollow(full, hdr.ModTime.Unix(), int64(hdr.ModTime.Nanosecond()))
}

// extractHardlink links to a regular file this archive already extracted, and to nothing else.
func (e *extractor) extractHardlink(rel, full string, hdr *tar.Header) error {
	src, err := tarEntryName(hdr.Linkname)
	if err != nil {
		return err
	}
	if !e.files[src] {
		return fileErrorf(codeInvalidArgument, "tar entry %q: a hardlink must refer to a regular file extracted before it, not %q", hdr.Name, hdr.Linkname)
	}
	srcFull := path.Join(e.root, src)
	var st syscall.Stat_t
	if err := syscall.Lstat(srcFull, &st); err != nil || entryType(st.Mode) != "file" {
		return fileErrorf(codeFailedPrecondition, "tar entry %q: %s is no longer a regular file", hdr.Name, srcFull)
	}
	if err := e.clearForEntry(rel, full); err != nil {
		return err
	}
	if err := os.Link(srcFull, full); err != nil {
		return fsError("create hardlink", full, err)
	}
	e.files[rel] = true
	return nil
}

// applyDirMeta sets owner, mode and mtime of the directories the archive listed, deepest first.
func (e *extractor) applyDirMeta() error {
	sort.SliceStable(e.dirs, func(i, j int) bool { return depthOf(e.dirs[i].rel) > depthOf(e.dirs[j].rel) })
	for _, d := range e.dirs {
		full := path.Join(e.root, d.rel)
		flags := os.O_RDONLY | syscall.O_DIRECTORY
		if d.rel != "." {
			flags |= syscall.O_NOFOLLOW
		}
		f, err := os.OpenFile(full, flags, 0)
		if err != nil {
			return fsError("open directory", full, err)
		}
		err = e.applyOneDirMeta(f, d)
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func (e *extractor) applyOneDirMeta(f *os.File, d dirMeta) error {
	if e.asRoot {
		if err := f.Chown(d.uid, d.gid); err != nil && !ignorableChownError(err) {
			return fsError("chown", f.Name(), err)
		}
	}
	if err := f.Chmod(unixMode(d.mode)); err != nil {
		return fsError("chmod", f.Name(), err)
	}
	return setMtimeFd(f, d.sec, d.nsec)
}

func depthOf(rel string) int {
	if rel == "." {
		return 0
	}
	return strings.Count(rel, "/") + 1
}

// ignorableChownError: a sandbox whose user namespace cannot map the archive's ids keeps the helper's own.
func ignorableChownError(err error) bool {
	return errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EINVAL)
}
