package main

import (
	"bufio"
	"io"
	"os"
	"path"
	"syscall"
)

const maxWalkEntries = 1000000

type statRequest struct {
	Path           string `json:"path"`
	FollowSymlinks bool   `json:"followSymlinks"`
}

func runStat(request []byte, _ io.Reader, out *bufio.Writer) error {
	var req statRequest
	if err := decodeFileRequest(request, "stat", &req); err != nil {
		return err
	}
	if err := checkAbsPath("path", req.Path); err != nil {
		return err
	}
	e, err := describePath(req.Path, req.Path, req.FollowSymlinks)
	if err != nil {
		return err
	}
	return writeJSONLine(out, e)
}

type walkRequest struct {
	Path       string `json:"path"`
	MaxDepth   int    `json:"maxDepth"`
	MaxEntries int    `json:"maxEntries"`
}

// walker emits entries under root depth first, siblings in byte order, never following a symlink.
type walker struct {
	root       string
	maxDepth   int
	maxEntries int
	emitted    int
	out        *bufio.Writer
}

// errWalkFull stops the walk once maxEntries entries are out and one more was found.
var errWalkFull = fileErrorf(codeResourceExhausted, "walk: entry limit reached")

func runWalk(request []byte, _ io.Reader, out *bufio.Writer) error {
	var req walkRequest
	if err := decodeFileRequest(request, "walk", &req); err != nil {
		return err
	}
	if err := checkAbsPath("path", req.Path); err != nil {
		return err
	}
	if req.MaxEntries < 1 || req.MaxEntries > maxWalkEntries || req.MaxDepth < 0 {
		return fileErrorf(codeInvalidArgument, "walk %s: maxEntries must be in 1..%d and maxDepth at least 0", req.Path, maxWalkEntries)
	}
	root, err := describePath(req.Path, ".", false)
	if err != nil {
		return err
	}
	if root.Type != "dir" {
		return writeJSONLine(out, root)
	}
	w := &walker{root: req.Path, maxDepth: req.MaxDepth, maxEntries: req.MaxEntries, out: out}
	err = w.walkDir("", 1)
	if err == errWalkFull {
		return writeJSONLine(out, struct {
			Truncated bool `json:"truncated"`
		}{true})
	}
	return err
}

// walkDir emits the children of rel (relative to the root; "" is the root) at the given depth.
func (w *walker) walkDir(rel string, depth int) error {
	names, err := sortedNames(path.Join(w.root, rel), false)
	if err != nil {
		return err
	}
	for _, name := range names {
		childRel := path.Join(rel, name)
		e, err := describePath(path.Join(w.root, childRel), childRel, false)
		if err != nil {
			if isNotExist(err) {
				continue // removed while we walked
			}
			return err
		}
		if w.emitted == w.maxEntries {
			return errWalkFull
		}
		w.emitted++
		if err := writeJSONLine(w.out, e); err != nil {
			return err
		}
		if e.Type == "dir" && (w.maxDepth == 0 || depth < w.maxDepth) {
			if err := w.walkDir(childRel, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

type readRequest struct {
	Path     string `json:"path"`
	Offset   int64  `json:"offset"`
	MaxBytes int64  `json:"maxBytes"`
}

// runRead prints the opened file's entry, a newline, then exactly min(size-offset, maxBytes) bytes.
func runRead(request []byte, _ io.Reader, out *bufio.Writer) error {
	var req readRequest
	if err := decodeFileRequest(request, "read", &req); err != nil {
		return err
	}
	if err := checkAbsPath("path", req.Path); err != nil {
		return err
	}
	if req.Offset < 0 || req.MaxBytes < 1 {
		return fileErrorf(codeInvalidArgument, "read %s: offset must be at least 0 and maxBytes at least 1", req.Path)
	}
	f, st, err := openRegular(req.Path)
	if err != nil {
		return err
	}
	defer f.Close()
	e := entryFromStat(req.Path, st)
	count := st.Size - req.Offset
	if count < 0 {
		count = 0
	}
	if count > req.MaxBytes {
		count = req.MaxBytes
		e.Truncated = true
	}
	if err := writeJSONLine(out, e); err != nil {
		return err
	}
	// with the header out of the buffer, the content bypasses it: bufio hands the copy to stdout's ReadFrom
	if err := out.Flush(); err != nil {
		return err
	}
	n, err := io.Copy(out, newFileSection(f, req.Offset, count))
	if err != nil {
		return fsError("read", req.Path, err)
	}
	if n != count {
		return fileErrorf(codeInternal, "read %s: the file shrank to %d bytes while it was read", req.Path, req.Offset+n)
	}
	return nil
}

// openRegular opens a regular file for reading. A FIFO or device is refused before it is opened (and
// O_NONBLOCK keeps a FIFO swapped in meanwhile from blocking the open); fstat has the last word.
func openRegular(p string) (*os.File, *syscall.Stat_t, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		return nil, nil, fsError("stat", p, err)
	}
	if entryType(st.Mode) != "file" {
		return nil, nil, fileErrorf(codeFailedPrecondition, "read %s: not a regular file", p)
	}
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, fsError("open", p, err)
	}
	fst, err := fstatFile(f)
	if err == nil && entryType(fst.Mode) != "file" {
		err = fileErrorf(codeFailedPrecondition, "read %s: not a regular file", p)
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, fst, nil
}
