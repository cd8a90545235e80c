// Command cleanroom-agent runs as PID 1 in every Cleanroom sandbox and serves the host over the
// agent protocol (PROTOCOL.md): exec with stdio, PTY, signals and exit status. `cleanroom-agent file ...`
// is the file helper the host execs for stat, walk, read, write, remove, archive and extract.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

const agentVersion = "0.1.0"

const (
	prSetDumpable       = 4
	prSetChildSubreaper = 36
	listenFDEnv         = "CLEANROOM_AGENT_LISTEN_FD"
	// listenPathEnv names a unix socket path the agent binds itself: under gVisor (runsc --host-uds=create) a
	// socket bound in a bind-mounted dir is a host socket the daemon connects to, where an inherited one is not.
	listenPathEnv = "CLEANROOM_AGENT_LISTEN_PATH"
	// terminationGrace is how long SIGTERM waits for workloads to exit before the agent exits.
	terminationGrace = 3 * time.Second
)

func prctl(option, arg uintptr) {
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, option, arg, 0)
}

func main() {
	// Same-uid workloads must not ptrace the agent or pidfd_getfd its sockets.
	prctl(prSetDumpable, 0)

	// The host runs file operations as an ordinary exec of this binary (PROTOCOL.md, "File operations").
	if len(os.Args) >= 2 && os.Args[1] == "file" {
		os.Exit(runFileCommand(os.Args[2:]))
	}
	if len(os.Args) >= 2 && os.Args[1] == "dial" {
		os.Exit(runDialCommand(os.Args[2:]))
	}

	listenPath := flag.String("listen", "", "listen on this unix socket path (for tests; not PID 1)")
	showVersion := flag.Bool("version", false, "print the agent version and exit")
	flag.Parse()
	if *showVersion {
		fmt.Println(agentVersion)
		return
	}

	// Without a handler, a write to a broken stdout/stderr would kill the agent. Notify (not Ignore)
	// so that children do not inherit SIGPIPE ignored.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	r := newReaper()
	if os.Getpid() != 1 {
		// In --listen mode, orphans of the workload come back to us rather than to the host's init.
		prctl(prSetChildSubreaper, 1)
	}

	ln, err := openListener(*listenPath)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cleanroom-agent: %v\n", err)
		os.Exit(1)
	}
	go terminateOnSignal(r, ln, *listenPath)

	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(50 * time.Millisecond) // EMFILE and friends: back off, keep serving
			continue
		}
		go serveConn(conn, r)
	}
}

func openListener(path string) (net.Listener, error) {
	if fdText, ok := os.LookupEnv(listenFDEnv); ok {
		os.Unsetenv(listenFDEnv)
		fd, err := strconv.Atoi(fdText)
		if err != nil || fd < 3 {
			return nil, fmt.Errorf("%s=%q is not a descriptor number", listenFDEnv, fdText)
		}
		syscall.CloseOnExec(fd)
		f := os.NewFile(uintptr(fd), "agent-listener")
		ln, err := net.FileListener(f) // dups with CLOEXEC
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("descriptor %d is not a listening socket: %v", fd, err)
		}
		return ln, nil
	}
	if envPath, ok := os.LookupEnv(listenPathEnv); ok {
		os.Unsetenv(listenPathEnv)
		if envPath == "" || envPath[0] != '/' {
			return nil, fmt.Errorf("%s=%q is not an absolute path", listenPathEnv, envPath)
		}
		// the host connects as root; nobody else in the sandbox needs the socket
		defer syscall.Umask(syscall.Umask(0o077))
		path = envPath
	}
	if path == "" {
		return nil, fmt.Errorf("no listener: set %s or %s, or pass --listen PATH", listenFDEnv, listenPathEnv)
	}
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		os.Remove(path)
	}
	return net.Listen("unix", path)
}

// terminateOnSignal forwards SIGTERM/SIGINT to every workload, waits a little for them, and exits.
func terminateOnSignal(r *reaper, ln net.Listener, listenPath string) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	sig := (<-sigs).(syscall.Signal)
	for _, pid := range r.pids() {
		_ = syscall.Kill(-pid, sig)
	}
	if os.Getpid() == 1 {
		_ = syscall.Kill(-1, sig) // everything else in the sandbox, daemons included
	}
	deadline := time.Now().Add(terminationGrace)
	for len(r.pids()) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // let EXIT frames go out
	if listenPath != "" {
		ln.Close()
		os.Remove(listenPath)
	}
	os.Exit(0)
}
