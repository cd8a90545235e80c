package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// execSpec is a validated EXEC request resolved against the sandbox: the binary, environment, identity.
type execSpec struct {
	path  string
	argv  []string
	env   []string
	dir   string
	cred  *syscall.Credential
	tty   *ttySize
	stdin bool
}

// execFailure is a command that could not be started: exit code 126 or 127 and a one-line message.
type execFailure struct {
	code int
	msg  string
}

func (e *execFailure) Error() string { return e.msg }

func failWith(code int, format string, args ...interface{}) *execFailure {
	return &execFailure{code: code, msg: fmt.Sprintf(format, args...)}
}

// prepareExec resolves a request the way a shell would, so that failures are reported before fork.
func prepareExec(req execRequest) (execSpec, *execFailure) {
	spec := execSpec{tty: req.TTY, stdin: req.Stdin}
	if req.Shell != nil {
		spec.argv = []string{"/bin/sh", "-lc", *req.Shell}
	} else {
		spec.argv = append([]string(nil), req.Argv...)
	}
	home := "/"
	userSpec := req.User
	if userSpec == "" && os.Geteuid() == 0 {
		userSpec = "0"
	}
	if userSpec != "" {
		u, err := lookupUser(userSpec)
		if err != nil {
			return spec, failWith(126, "%v", err)
		}
		home = u.home
		spec.cred = &syscall.Credential{Uid: u.uid, Gid: u.gid, Groups: u.groups}
	} else if h, ok := os.LookupEnv("HOME"); ok && h != "" {
		home = h
	}

	spec.env = append([]string(nil), req.Env...)
	path, hasPath := envValue(spec.env, "PATH")
	if !hasPath {
		path = defaultPath
		spec.env = append(spec.env, "PATH="+defaultPath)
	}
	if _, ok := envValue(spec.env, "HOME"); !ok {
		spec.env = append(spec.env, "HOME="+home)
	}
	if _, ok := envValue(spec.env, "TERM"); !ok && spec.tty != nil {
		spec.env = append(spec.env, "TERM=xterm")
	}

	spec.dir = req.Cwd
	if spec.dir == "" {
		spec.dir = "/"
	}
	if !filepath.IsAbs(spec.dir) {
		return spec, failWith(126, "chdir %q: the working directory must be an absolute path", spec.dir)
	}
	if fi, err := os.Stat(spec.dir); err != nil {
		return spec, failWith(126, "chdir %q: %v", spec.dir, unwrapPathError(err))
	} else if !fi.IsDir() {
		return spec, failWith(126, "chdir %q: not a directory", spec.dir)
	}

	bin, err := lookPath(spec.argv[0], path)
	if err != nil {
		return spec, classifyExecError(spec.argv[0], err)
	}
	spec.path = bin
	return spec, nil
}

// classifyExecError maps a failed lookup or execve to the shell's exit codes: 127 not found, 126 otherwise.
func classifyExecError(name string, err error) *execFailure {
	err = unwrapPathError(err)
	if errors.Is(err, errNotFound) || errors.Is(err, syscall.ENOENT) {
		return failWith(127, "exec %q: %v", name, err)
	}
	return failWith(126, "exec %q: %v", name, err)
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
