package main

import (
	"os"
	"sync"
	"syscall"
)

// process is one EXEC channel: a child process group and the goroutines that move its bytes.
type process struct {
	s       *session
	channel uint32
	pid     int
	tty     *os.File // pty master in TTY mode
	outs    [3]*outStream
	stdin   *stdinWriter
	outWG   sync.WaitGroup

	mu     sync.Mutex
	exited bool
}

// startExec starts the request on channel; failures to start are reported as an exit (126/127).
func (s *session) startExec(channel uint32, payload []byte) {
	req, err := parseExecRequest(payload)
	if err != nil {
		s.failExec(channel, false, failWith(126, "%v", err))
		return
	}
	spec, failure := prepareExec(req)
	if failure != nil {
		s.failExec(channel, req.TTY != nil, failure)
		return
	}
	if _, err := s.spawn(channel, spec); err != nil {
		if f, ok := err.(*execFailure); ok {
			s.failExec(channel, req.TTY != nil, f)
		} else {
			s.failExec(channel, req.TTY != nil, classifyExecError(spec.argv[0], err))
		}
	}
}

// failExec reports a command that never ran: a message on stderr (stdout in TTY mode), EOFs, EXIT.
func (s *session) failExec(channel uint32, tty bool, f *execFailure) {
	msg := []byte("cleanroom-agent: " + truncate(f.msg, 1000) + "\n")
	if tty {
		_ = s.send(typeData, streamStdout, channel, msg)
		_ = s.send(typeEOF, streamStdout, channel, nil)
	} else {
		_ = s.send(typeData, streamStderr, channel, msg)
		_ = s.send(typeEOF, streamStdout, channel, nil)
		_ = s.send(typeEOF, streamStderr, channel, nil)
	}
	_ = s.sendJSON(typeExit, 0, channel, exitMessage{ExitCode: f.code})
}

// pipeForParent makes a pipe whose parent end is non-blocking (so Go's poller and deadlines work)
// and whose child end stays blocking, as programs expect of their stdio.
func pipeForParent(parentReads bool) (parent *os.File, child int, err error) {
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC); err != nil {
		return nil, -1, err
	}
	p, c := fds[1], fds[0]
	if parentReads {
		p, c = fds[0], fds[1]
	}
	if err := syscall.SetNonblock(p, true); err != nil {
		syscall.Close(p)
		syscall.Close(c)
		return nil, -1, err
	}
	return os.NewFile(uintptr(p), "pipe"), c, nil
}

func (s *session) spawn(channel uint32, spec execSpec) (*process, error) {
	p := &process{s: s, channel: channel}
	var childFDs []int
	var parentFiles []*os.File
	cleanup := func() {
		for _, fd := range childFDs {
			syscall.Close(fd)
		}
	}
	fail := func(err error) (*process, error) {
		cleanup()
		for _, f := range parentFiles {
			f.Close()
		}
		return nil, err
	}
	files := make([]uintptr, 3)
	sys := &syscall.SysProcAttr{Credential: spec.cred}
	if spec.tty != nil {
		master, slave, _, err := openPTY()
		if err != nil {
			return fail(failWith(126, "allocate a terminal: %v", err))
		}
		parentFiles = append(parentFiles, master)
		childFDs = append(childFDs, slave)
		if err := setWinsize(master, spec.tty.Rows, spec.tty.Cols); err != nil {
			return fail(failWith(126, "set terminal size: %v", err))
		}
		if spec.cred != nil {
			_ = syscall.Fchown(slave, int(spec.cred.Uid), -1)
		}
		files[0], files[1], files[2] = uintptr(slave), uintptr(slave), uintptr(slave)
		sys.Setsid, sys.Setctty, sys.Ctty = true, true, 0
		p.tty = master
		p.outs[streamStdout] = newOutStream(p, streamStdout, master, false)
		if spec.stdin {
			p.stdin = newStdinWriter(p, master, true)
		}
	} else {
		if spec.stdin {
			w, r, err := pipeForParent(false)
			if err != nil {
				return fail(err)
			}
			parentFiles = append(parentFiles, w)
			childFDs = append(childFDs, r)
			files[0] = uintptr(r)
			p.stdin = newStdinWriter(p, w, false)
		} else {
			null, err := syscall.Open(os.DevNull, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
			if err != nil {
				return fail(err)
			}
			childFDs = append(childFDs, null)
			files[0] = uintptr(null)
		}
		for _, stream := range []byte{streamStdout, streamStderr} {
			r, w, err := pipeForParent(true)
			if err != nil {
				return fail(err)
			}
			parentFiles = append(parentFiles, r)
			childFDs = append(childFDs, w)
			files[stream] = uintptr(w)
			p.outs[stream] = newOutStream(p, stream, r, true)
		}
		sys.Setpgid = true
	}
	attr := &syscall.ProcAttr{Dir: spec.dir, Env: spec.env, Files: files, Sys: sys}
	pid, exitCh, err := s.reaper.start(func() (int, error) {
		return syscall.ForkExec(spec.path, spec.argv, attr)
	})
	if err != nil {
		return fail(err)
	}
	cleanup()
	p.pid = pid
	s.register(p)
	for _, o := range p.outs {
		if o != nil {
			p.outWG.Add(1)
			go o.run()
		}
	}
	if p.stdin != nil {
		go p.stdin.run()
	}
	go p.supervise(exitCh)
	return p, nil
}

// supervise waits for the exit, drains output (bounded), then reports EXIT.
func (p *process) supervise(exitCh <-chan syscall.WaitStatus) {
	ws := <-exitCh
	p.mu.Lock()
	p.exited = true
	p.mu.Unlock()
	for _, o := range p.outs {
		if o != nil {
			o.markExited()
		}
	}
	p.outWG.Wait()
	if p.stdin != nil {
		p.stdin.shutdown()
		<-p.stdin.done
	}
	if p.tty != nil {
		p.tty.Close()
	}
	p.s.remove(p.channel)
	_ = p.s.sendJSON(typeExit, 0, p.channel, exitFromStatus(ws))
}

// signalGroup delivers sig to the process group unless the leader has already been reaped.
func (p *process) signalGroup(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.exited {
		_ = syscall.Kill(-p.pid, sig)
	}
}

// abandon runs when the connection is gone: kill the group and stop waiting for credit.
func (p *process) abandon() {
	p.signalGroup(syscall.SIGKILL)
	for _, o := range p.outs {
		if o != nil {
			o.wake()
		}
	}
	if p.stdin != nil {
		p.stdin.shutdown()
	}
}

func (p *process) handle(f frame) error {
	switch f.typ {
	case typeSignal:
		var m signalMessage
		if err := decodeStrict(f.payload, &m); err != nil || f.stream != 0 {
			return protocolErrorf("malformed SIGNAL on channel %d", p.channel)
		}
		if sig, ok := parseSignal(m.Signal); ok {
			p.signalGroup(sig)
		}
		return nil
	case typeResize:
		var m ttySize
		if err := decodeStrict(f.payload, &m); err != nil || f.stream != 0 || !validSize(m.Rows) || !validSize(m.Cols) {
			return protocolErrorf("malformed RESIZE on channel %d", p.channel)
		}
		if p.tty != nil {
			_ = setWinsize(p.tty, m.Rows, m.Cols)
		}
		return nil
	case typeData, typeEOF:
		if f.stream != streamStdin || p.stdin == nil {
			return protocolErrorf("stdin frame on channel %d, which has no stdin", p.channel)
		}
		if f.typ == typeEOF {
			return p.stdin.closeInput()
		}
		return p.stdin.push(f.payload)
	case typeWindow:
		var m windowMessage
		if err := decodeStrict(f.payload, &m); err != nil {
			return protocolErrorf("malformed WINDOW on channel %d", p.channel)
		}
		if f.stream > streamStderr || p.outs[f.stream] == nil {
			return protocolErrorf("WINDOW for stream %d on channel %d, which has no such output", f.stream, p.channel)
		}
		return p.outs[f.stream].addCredit(m.Credit)
	}
	return protocolErrorf("unexpected frame type 0x%02x", f.typ)
}
