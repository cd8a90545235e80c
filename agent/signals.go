package main

import (
	"strconv"
	"strings"
	"syscall"
)

// Signal names on the wire are the POSIX names ("SIGTERM"); numbers differ between architectures.
var signalNames = []struct {
	name string
	sig  syscall.Signal
}{
	{"SIGHUP", syscall.SIGHUP}, {"SIGINT", syscall.SIGINT}, {"SIGQUIT", syscall.SIGQUIT},
	{"SIGILL", syscall.SIGILL}, {"SIGTRAP", syscall.SIGTRAP}, {"SIGABRT", syscall.SIGABRT},
	{"SIGBUS", syscall.SIGBUS}, {"SIGFPE", syscall.SIGFPE}, {"SIGKILL", syscall.SIGKILL},
	{"SIGUSR1", syscall.SIGUSR1}, {"SIGSEGV", syscall.SIGSEGV}, {"SIGUSR2", syscall.SIGUSR2},
	{"SIGPIPE", syscall.SIGPIPE}, {"SIGALRM", syscall.SIGALRM}, {"SIGTERM", syscall.SIGTERM},
	{"SIGCHLD", syscall.SIGCHLD}, {"SIGCONT", syscall.SIGCONT}, {"SIGSTOP", syscall.SIGSTOP},
	{"SIGTSTP", syscall.SIGTSTP}, {"SIGTTIN", syscall.SIGTTIN}, {"SIGTTOU", syscall.SIGTTOU},
	{"SIGURG", syscall.SIGURG}, {"SIGXCPU", syscall.SIGXCPU}, {"SIGXFSZ", syscall.SIGXFSZ},
	{"SIGVTALRM", syscall.SIGVTALRM}, {"SIGPROF", syscall.SIGPROF}, {"SIGWINCH", syscall.SIGWINCH},
	{"SIGIO", syscall.SIGIO}, {"SIGPWR", syscall.SIGPWR}, {"SIGSYS", syscall.SIGSYS},
}

// signalName names a signal for the EXIT frame; signals without a POSIX name become "SIG<n>".
func signalName(sig syscall.Signal) string {
	for _, s := range signalNames {
		if s.sig == sig {
			return s.name
		}
	}
	return "SIG" + strconv.Itoa(int(sig))
}

// parseSignal accepts the names signalName produces.
func parseSignal(name string) (syscall.Signal, bool) {
	for _, s := range signalNames {
		if s.name == name {
			return s.sig, true
		}
	}
	if rest := strings.TrimPrefix(name, "SIG"); rest != name {
		if n, err := strconv.Atoi(rest); err == nil && n >= 1 && n <= 64 {
			return syscall.Signal(n), true
		}
	}
	return 0, false
}

// exitFromStatus turns a wait status into the EXIT message: death by signal is 128+signo plus the name.
func exitFromStatus(ws syscall.WaitStatus) exitMessage {
	if ws.Signaled() {
		return exitMessage{ExitCode: 128 + int(ws.Signal()), Signal: signalName(ws.Signal())}
	}
	return exitMessage{ExitCode: ws.ExitStatus() & 0xff}
}
