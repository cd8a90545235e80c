package main

// The file helper: `cleanroom-agent file <op> <request JSON>`, run by the host as an ordinary EXEC so
// that flow control, cancellation and kill-on-disconnect come from the exec channel, and every path is
// resolved in the sandbox's own mount namespace (see PROTOCOL.md, "File operations").

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"unicode/utf8"
)

// Error codes the helper reports; the host maps them to its reason codes.
const (
	codeNotFound           = "not_found"
	codePermissionDenied   = "permission_denied"
	codeInvalidArgument    = "invalid_argument"
	codeFailedPrecondition = "failed_precondition"
	codeAlreadyExists      = "already_exists"
	codeResourceExhausted  = "resource_exhausted"
	codeInternal           = "internal"
)

// maxErrorMessageRunes keeps the error line far below the 4 KiB of stderr the host reads, even when
// every rune of a hostile path needs a six-byte JSON escape.
const maxErrorMessageRunes = 300

// fileError is a failed file operation: one of the codes above and a message that names the path.
type fileError struct {
	code string
	msg  string
}

func (e *fileError) Error() string { return e.msg }

func fileErrorf(code, format string, args ...interface{}) *fileError {
	return &fileError{code: code, msg: fmt.Sprintf(format, args...)}
}

// fileOp runs one operation: it reads its request, may read stdin, and writes its output to out.
type fileOp func(request []byte, stdin io.Reader, out *bufio.Writer) error

var fileOps = map[string]fileOp{
	"stat":    runStat,
	"walk":    runWalk,
	"read":    runRead,
	"write":   runWrite,
	"remove":  runRemove,
	"archive": runArchive,
	"extract": runExtract,
}

// runFileCommand runs `file <op> <json>` and returns the exit status: 0, or 1 with one JSON error line on stderr.
func runFileCommand(args []string) int {
	if len(args) > 0 {
		growBulkPipe(args[0])
	}
	err := dispatchFileOp(args, os.Stdin, os.Stdout)
	if err == nil {
		return 0
	}
	return reportFileError(err)
}

// reportFileError writes the one JSON error line to stderr and returns the exit status 1.
func reportFileError(err error) int {
	var fe *fileError
	if !errors.As(err, &fe) {
		fe = &fileError{code: codeInternal, msg: err.Error()}
	}
	line, _ := json.Marshal(struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}{fe.code, truncateRunes(fe.msg, maxErrorMessageRunes)})
	os.Stderr.Write(append(line, '\n'))
	return 1
}

func dispatchFileOp(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) != 2 {
		return fileErrorf(codeInvalidArgument, "usage: cleanroom-agent file <op> <request JSON>")
	}
	op, ok := fileOps[args[0]]
	if !ok {
		return fileErrorf(codeInvalidArgument, "unknown file operation %q", truncate(args[0], 40))
	}
	if f, ok := stdout.(*os.File); ok {
		stdout = stdoutFile{f} // sends a file's bytes with sendfile(2)
	}
	out := bufio.NewWriterSize(stdout, 64<<10)
	if err := op([]byte(args[1]), stdin, out); err != nil {
		out.Flush() // partial output is harmless: the host trusts nothing before a zero exit
		return err
	}
	return out.Flush()
}

// decodeFileRequest decodes a request strictly: unknown fields are refused, as in EXEC.
func decodeFileRequest(request []byte, op string, v interface{}) error {
	if err := decodeJSON(request, v); err != nil {
		return fileErrorf(codeInvalidArgument, "invalid %s request: %v", op, err)
	}
	return nil
}

// checkAbsPath accepts only absolute, clean paths without NUL bytes.
func checkAbsPath(what, p string) error {
	if strings.IndexByte(p, 0) >= 0 {
		return fileErrorf(codeInvalidArgument, "%s contains a NUL byte", what)
	}
	if !filepath.IsAbs(p) || filepath.Clean(p) != p {
		return fileErrorf(codeInvalidArgument, "%s %q must be an absolute, clean path", what, p)
	}
	return nil
}

// checkRelPath accepts a clean relative path without ".." components ("." is the root itself).
func checkRelPath(what, p string) error {
	if p == "" || strings.IndexByte(p, 0) >= 0 {
		return fileErrorf(codeInvalidArgument, "%s %q is empty or contains a NUL byte", what, p)
	}
	if strings.HasPrefix(p, "/") || filepath.Clean(p) != p {
		return fileErrorf(codeInvalidArgument, "%s %q must be a clean relative path", what, p)
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return fileErrorf(codeInvalidArgument, "%s %q must not contain \"..\"", what, p)
		}
	}
	return nil
}

// fsError turns a system call failure into a fileError whose code follows the errno.
func fsError(op, path string, err error) error {
	if _, ok := err.(*fileError); ok {
		return err
	}
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return fileErrorf(codeInternal, "%s %s: %v", op, path, err)
	}
	return fileErrorf(codeForErrno(errno), "%s %s: %v", op, path, errno)
}

func codeForErrno(errno syscall.Errno) string {
	switch errno {
	case syscall.ENOENT:
		return codeNotFound
	case syscall.EACCES, syscall.EPERM:
		return codePermissionDenied
	case syscall.EEXIST:
		return codeAlreadyExists
	case syscall.ENOTDIR, syscall.EISDIR, syscall.ENOTEMPTY, syscall.ELOOP, syscall.EROFS, syscall.EXDEV, syscall.EBUSY:
		return codeFailedPrecondition
	case syscall.ENOSPC, syscall.EDQUOT, syscall.EFBIG, syscall.EMFILE, syscall.ENFILE:
		return codeResourceExhausted
	case syscall.EINVAL, syscall.ENAMETOOLONG:
		return codeInvalidArgument
	}
	return codeInternal
}

func isNotExist(err error) bool { return errors.Is(err, syscall.ENOENT) }

// writeJSONLine writes v as one line; HTML escaping is off so paths read as they are.
func writeJSONLine(out io.Writer, v interface{}) error {
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

func truncateRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	runes := []rune(s)
	return string(runes[:n]) + "…"
}
