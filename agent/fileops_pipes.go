package main

// File content between the helper's stdio pipes and files, moved inside the kernel: a file's bytes go into the
// stdout pipe with sendfile(2), and the stdin pipe's bytes go into a file with splice(2), instead of through a
// user-space buffer 32 KiB at a time. And the pipes between helper and agent hold 1 MiB instead of 64 KiB, so
// the two processes take turns a sixteenth as often. On a two-core host a copy's processes share the CPUs,
// so what the helper does not spend, the agent and daemon get (bench/copy.ts measures the whole path).

import (
	"errors"
	"io"
	"os"
	"syscall"
)

const (
	fSetPipeSize = 1031 // F_SETPIPE_SZ
	// helperPipeBytes is the default pipe-max-size: what an unprivileged process may ask for
	helperPipeBytes = 1 << 20
	// kernelCopyChunk bounds one splice or sendfile call
	kernelCopyChunk = 1 << 20
	spliceFMove     = 1 // SPLICE_F_MOVE
)

// growBulkPipe grows the one pipe that carries op's content (stdout for read and archive, stdin for write and
// extract): only that one, because the big buffers count against the sandbox user's pipe-user-pages-soft.
func growBulkPipe(op string) {
	switch op {
	case "read", "archive":
		growPipe(os.Stdout)
	case "write", "extract":
		growPipe(os.Stdin)
	}
}

// growPipe asks for a 1 MiB buffer when f is a pipe. Best effort: the kernel may refuse (a user over
// pipe-user-pages-soft), and a pipe that stays at 64 KiB only costs speed.
func growPipe(f *os.File) {
	if isPipe(f) {
		_ = withFd(f, func(fd int) error {
			_, _, _ = syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), fSetPipeSize, helperPipeBytes)
			return nil
		})
	}
}

func isPipe(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeNamedPipe != 0
}

// withFd runs fn with f's descriptor without switching it to blocking mode (as f.Fd() would).
func withFd(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var fnErr error
	if err := rc.Control(func(fd uintptr) { fnErr = fn(int(fd)) }); err != nil {
		return err
	}
	return fnErr
}

// errKernelCopyUnsupported: splice or sendfile refused these descriptors; copy through user space instead.
var errKernelCopyUnsupported = errors.New("kernel copy not supported here")

// kernelCopy calls move (one splice or sendfile of at most n bytes) until limit bytes moved or move reports the
// end (0). A refusal before the first byte is errKernelCopyUnsupported; after it, an error like any other.
func kernelCopy(limit int64, move func(n int) (int, error)) (int64, error) {
	var moved int64
	for moved < limit {
		chunk := limit - moved
		if chunk > kernelCopyChunk {
			chunk = kernelCopyChunk
		}
		n, err := move(int(chunk))
		if err == syscall.EINTR {
			continue
		}
		if (err == syscall.EINVAL || err == syscall.ENOSYS) && moved == 0 {
			return 0, errKernelCopyUnsupported
		}
		if err != nil {
			return moved, err
		}
		if n == 0 {
			break
		}
		moved += int64(n)
	}
	return moved, nil
}

// pipeCall runs call on the pipe's descriptor, waiting while it would block (a non-blocking pipe, as os.Pipe
// makes; the helper's own stdio is blocking).
func pipeCall(pipe *os.File, write bool, call func(fd int) (int, error)) (int, error) {
	rc, err := pipe.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var callErr error
	attempt := func(fd uintptr) bool {
		n, callErr = call(int(fd))
		return callErr != syscall.EAGAIN
	}
	if write {
		err = rc.Write(attempt)
	} else {
		err = rc.Read(attempt)
	}
	if err != nil {
		return 0, err
	}
	return n, callErr
}

// copyIntoFile copies up to limit bytes of src to dst: spliced when src is a pipe, else with io.Copy.
func copyIntoFile(dst *os.File, src io.Reader, limit int64) (int64, error) {
	pipe, ok := src.(*os.File)
	if !ok || !isPipe(pipe) {
		return io.Copy(dst, io.LimitReader(src, limit))
	}
	var moved int64
	err := withFd(dst, func(out int) error {
		var err error
		moved, err = kernelCopy(limit, func(n int) (int, error) {
			return pipeCall(pipe, false, func(in int) (int, error) {
				k, err := syscall.Splice(in, nil, out, nil, n, spliceFMove)
				return int(k), err
			})
		})
		return err
	})
	if err == errKernelCopyUnsupported {
		return io.Copy(dst, io.LimitReader(src, limit))
	}
	if err == nil && moved < limit {
		// splice said 0: the end, on Linux. gVisor (runsc 20221219) also says 0 for a momentarily empty pipe, so a
		// read, which blocks until data or the real end, settles it (one extra syscall at the true end).
		rest, copyErr := io.Copy(dst, io.LimitReader(src, limit-moved))
		moved, err = moved+rest, copyErr
	}
	return moved, err
}

// fileSection is count bytes of a file from offset: an io.Reader, which stdoutFile sends with sendfile(2).
type fileSection struct {
	*io.SectionReader
	file   *os.File
	offset int64
	count  int64
}

func newFileSection(f *os.File, offset, count int64) *fileSection {
	return &fileSection{SectionReader: io.NewSectionReader(f, offset, count), file: f, offset: offset, count: count}
}

// stdoutFile is the helper's stdout when it is a pipe (to the agent). Like net.TCPConn, its ReadFrom sends a
// fileSection with sendfile(2); bufio.Writer hands a copy to it once its own buffer is empty.
type stdoutFile struct{ f *os.File }

func (s stdoutFile) Write(p []byte) (int, error) { return s.f.Write(p) }

func (s stdoutFile) ReadFrom(r io.Reader) (int64, error) {
	plain := struct{ io.Writer }{s.f} // io.Copy to this does not come back here
	section, ok := r.(*fileSection)
	if !ok {
		return io.Copy(plain, r)
	}
	var sent int64
	err := withFd(section.file, func(in int) error {
		offset := section.offset
		var err error
		sent, err = kernelCopy(section.count, func(n int) (int, error) {
			return pipeCall(s.f, true, func(out int) (int, error) { return syscall.Sendfile(out, in, &offset, n) })
		})
		return err
	})
	if err == errKernelCopyUnsupported {
		return io.Copy(plain, section)
	}
	return sent, err
}
