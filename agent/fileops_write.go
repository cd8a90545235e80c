package main

import (
	"bufio"
	"io"
	"os"
	"os/signal"
	"path"
	"syscall"
)

// maxSafeInteger is the largest byte count a JavaScript host can state exactly.
const maxSafeInteger = 1<<53 - 1

type writeRequest struct {
	Path          string  `json:"path"`
	Mode          *uint32 `json:"mode"`
	MtimeSec      *int64  `json:"mtimeSec"`
	MtimeNsec     *int64  `json:"mtimeNsec"`
	CreateParents bool    `json:"createParents"`
	Size          *int64  `json:"size"`
	MaxBytes      *int64  `json:"maxBytes"`
}

func parseWriteRequest(request []byte) (writeRequest, error) {
	var req writeRequest
	if err := decodeFileRequest(request, "write", &req); err != nil {
		return req, err
	}
	if err := checkAbsPath("path", req.Path); err != nil {
		return req, err
	}
	switch {
	case req.Path == "/":
		return req, fileErrorf(codeInvalidArgument, "write /: the root cannot be a file")
	case req.MaxBytes == nil || *req.MaxBytes < 0 || *req.MaxBytes > maxSafeInteger:
		return req, fileErrorf(codeInvalidArgument, "write %s: maxBytes is required and must be in 0..2^53-1", req.Path)
	case req.Size != nil && (*req.Size < 0 || *req.Size > maxSafeInteger):
		return req, fileErrorf(codeInvalidArgument, "write %s: size must be in 0..2^53-1", req.Path)
	case req.Mode != nil && *req.Mode > permBits:
		return req, fileErrorf(codeInvalidArgument, "write %s: mode must be in 0..0o7777", req.Path)
	case req.MtimeNsec != nil && (req.MtimeSec == nil || *req.MtimeNsec < 0 || *req.MtimeNsec > 999999999):
		return req, fileErrorf(codeInvalidArgument, "write %s: mtimeNsec needs mtimeSec and must be in 0..999999999", req.Path)
	case req.Size != nil && *req.Size > *req.MaxBytes:
		return req, fileErrorf(codeResourceExhausted, "write %s: size %d exceeds the limit of %d bytes", req.Path, *req.Size, *req.MaxBytes)
	}
	if req.Mode == nil {
		mode := uint32(0o644)
		req.Mode = &mode
	}
	return req, nil
}

// runWrite writes stdin to a temp file beside the destination and renames it over the destination, so
// readers see the old file or the whole new one, and a symlink at the destination is replaced, not followed.
func runWrite(request []byte, stdin io.Reader, out *bufio.Writer) error {
	req, err := parseWriteRequest(request)
	if err != nil {
		return err
	}
	if err := prepareWriteDestination(req); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(path.Dir(req.Path), ".cleanroom-write-*")
	if err != nil {
		return fsError("create a temp file beside", req.Path, err)
	}
	defer removeOnTermination(req.Path, tmp.Name())()
	committed := false
	defer func() {
		if !committed {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	st, err := fillWriteTemp(tmp, stdin, req)
	if err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return fsError("write", req.Path, err)
	}
	if err := os.Rename(tmp.Name(), req.Path); err != nil {
		return fsError("replace", req.Path, err)
	}
	committed = true
	return writeJSONLine(out, entryFromStat(req.Path, st))
}

// removeOnTermination removes the temp file when the host terminates the helper because its input
// failed, so an aborted write leaves nothing behind. The host signals without closing stdin first, so
// the helper is still waiting for content and no rename can race this. Call the returned func when done.
func removeOnTermination(dest, tmpName string) (stop func()) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		select {
		case <-sigs:
			os.Remove(tmpName)
			os.Exit(reportFileError(fileErrorf(codeInternal, "write %s: terminated before the content was complete", dest)))
		case <-done:
		}
	}()
	return func() {
		signal.Stop(sigs)
		close(done)
	}
}

// prepareWriteDestination checks the destination is not a directory and that its parent exists (or makes it).
func prepareWriteDestination(req writeRequest) error {
	var st syscall.Stat_t
	if err := syscall.Lstat(req.Path, &st); err == nil && entryType(st.Mode) == "dir" {
		return fileErrorf(codeFailedPrecondition, "write %s: is a directory", req.Path)
	}
	parent := path.Dir(req.Path)
	err := syscall.Stat(parent, &st)
	switch {
	case err == nil && entryType(st.Mode) != "dir":
		return fileErrorf(codeFailedPrecondition, "write %s: %s is not a directory", req.Path, parent)
	case err == nil:
		return nil
	case isNotExist(err) && req.CreateParents:
		return mkdirParents(parent)
	case isNotExist(err):
		return fileErrorf(codeNotFound, "write %s: the parent directory %s does not exist", req.Path, parent)
	}
	return fsError("stat", parent, err)
}

// fillWriteTemp copies the content (bounded), then sets mode and mtime on the descriptor and returns its stat.
func fillWriteTemp(tmp *os.File, stdin io.Reader, req writeRequest) (*syscall.Stat_t, error) {
	limit := *req.MaxBytes
	if req.Size != nil {
		limit = *req.Size
	}
	n, err := copyIntoFile(tmp, stdin, limit+1)
	if err != nil {
		return nil, fsError("write", req.Path, err)
	}
	if req.Size != nil && n != *req.Size {
		return nil, fileErrorf(codeFailedPrecondition, "write %s: the content was not the announced %d bytes", req.Path, *req.Size)
	}
	if n > *req.MaxBytes {
		return nil, fileErrorf(codeResourceExhausted, "write %s: the content exceeds the limit of %d bytes", req.Path, *req.MaxBytes)
	}
	// fchmod, not the create mode: the umask must not apply, and setuid/setgid/sticky must survive.
	if err := tmp.Chmod(unixMode(*req.Mode)); err != nil {
		return nil, fsError("chmod", req.Path, err)
	}
	if req.MtimeSec != nil {
		var nsec int64
		if req.MtimeNsec != nil {
			nsec = *req.MtimeNsec
		}
		if err := setMtimeFd(tmp, *req.MtimeSec, nsec); err != nil {
			return nil, err
		}
	}
	return fstatFile(tmp)
}

// unixMode converts wire permission bits (including setuid/setgid/sticky) to an os.FileMode.
func unixMode(bits uint32) os.FileMode {
	mode := os.FileMode(bits & 0o777)
	if bits&syscall.S_ISUID != 0 {
		mode |= os.ModeSetuid
	}
	if bits&syscall.S_ISGID != 0 {
		mode |= os.ModeSetgid
	}
	if bits&syscall.S_ISVTX != 0 {
		mode |= os.ModeSticky
	}
	return mode
}

// mkdirParents creates dir and its missing ancestors, each 0755 whatever the umask.
func mkdirParents(dir string) error {
	var st syscall.Stat_t
	err := syscall.Stat(dir, &st)
	if err == nil {
		if entryType(st.Mode) != "dir" {
			return fileErrorf(codeFailedPrecondition, "create directory %s: a %s is in the way", dir, entryType(st.Mode))
		}
		return nil
	}
	if !isNotExist(err) {
		return fsError("stat", dir, err)
	}
	if err := mkdirParents(path.Dir(dir)); err != nil {
		return err
	}
	return mkdirMode(dir, 0o755)
}

// mkdirMode creates one directory and sets its mode through a descriptor opened without following symlinks.
func mkdirMode(dir string, mode uint32) error {
	if err := syscall.Mkdir(dir, 0o700); err != nil {
		return fsError("create directory", dir, err)
	}
	f, err := os.OpenFile(dir, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return fsError("open directory", dir, err)
	}
	defer f.Close()
	if err := f.Chmod(unixMode(mode)); err != nil {
		return fsError("chmod", dir, err)
	}
	return nil
}

type removeRequest struct {
	Path      string `json:"path"`
	Recursive bool   `json:"recursive"`
}

// runRemove removes a path without following symlinks; a missing path is reported, not an error.
func runRemove(request []byte, _ io.Reader, out *bufio.Writer) error {
	var req removeRequest
	if err := decodeFileRequest(request, "remove", &req); err != nil {
		return err
	}
	if err := checkAbsPath("path", req.Path); err != nil {
		return err
	}
	if req.Path == "/" {
		return fileErrorf(codeInvalidArgument, "remove /: refusing to remove the root")
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(req.Path, &st); err != nil {
		if isNotExist(err) {
			return writeJSONLine(out, map[string]bool{"removed": false})
		}
		return fsError("stat", req.Path, err)
	}
	var err error
	switch {
	case entryType(st.Mode) != "dir":
		err = syscall.Unlink(req.Path)
	case req.Recursive:
		err = os.RemoveAll(req.Path) // removes through directory descriptors; never follows a symlink
	default:
		err = syscall.Rmdir(req.Path)
		if err == syscall.ENOTEMPTY || err == syscall.EEXIST {
			return fileErrorf(codeFailedPrecondition, "remove %s: the directory is not empty; remove it recursively", req.Path)
		}
	}
	if err != nil {
		return fsError("remove", req.Path, err)
	}
	return writeJSONLine(out, map[string]bool{"removed": true})
}
