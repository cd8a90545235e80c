package main

import (
	"os"
	"sync"
	"time"
)

// drainBudget bounds how long output is still read after the main process exits (background
// children may hold the pipe open). Time spent waiting for the host's credit does not count.
const drainBudget = 250 * time.Millisecond

// outStream copies one output (pipe or pty master) to DATA frames, never more than the host's credit.
type outStream struct {
	p          *process
	stream     byte
	f          *os.File
	closeOnEnd bool

	mu        sync.Mutex
	cond      *sync.Cond
	credit    int
	exited    bool
	exitAt    time.Time
	budget    time.Duration
	readStart time.Time
}

func newOutStream(p *process, stream byte, f *os.File, closeOnEnd bool) *outStream {
	o := &outStream{p: p, stream: stream, f: f, closeOnEnd: closeOnEnd, credit: initialWindow, budget: drainBudget}
	o.cond = sync.NewCond(&o.mu)
	return o
}

func (o *outStream) addCredit(n int) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if n < 1 || n > initialWindow || o.credit+n > initialWindow {
		return protocolErrorf("WINDOW credit %d for stream %d on channel %d exceeds the window", n, o.stream, o.p.channel)
	}
	o.credit += n
	o.cond.Signal()
	return nil
}

// wake releases a goroutine waiting for credit once the connection is gone (output is then discarded).
func (o *outStream) wake() {
	o.mu.Lock()
	o.cond.Broadcast()
	o.mu.Unlock()
}

func (o *outStream) markExited() {
	o.mu.Lock()
	o.exited = true
	o.exitAt = time.Now()
	deadline := o.exitAt.Add(o.budget)
	o.mu.Unlock()
	_ = o.f.SetReadDeadline(deadline)
}

// acquire waits for credit and returns how many bytes (at most limit) the next read may take (0: stop reading).
func (o *outStream) acquire(limit int) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	dead := o.p.s.dead.Load()
	for o.credit == 0 && !dead {
		o.cond.Wait()
		dead = o.p.s.dead.Load()
	}
	o.readStart = time.Now()
	if o.exited {
		if o.budget <= 0 {
			return 0
		}
		_ = o.f.SetReadDeadline(o.readStart.Add(o.budget))
	}
	if dead || o.credit > limit {
		return limit
	}
	return o.credit
}

// afterRead charges the drain budget and the credit for one read.
func (o *outStream) afterRead(n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.exited {
		start := o.readStart
		if start.Before(o.exitAt) {
			start = o.exitAt
		}
		o.budget -= time.Since(start)
	}
	if o.credit >= n {
		o.credit -= n
	} else {
		o.credit = 0 // reads while the connection was gone
	}
}

func (o *outStream) run() {
	defer o.p.outWG.Done()
	buf := make([]byte, headerSize+firstReadBytes)
	for {
		n := o.acquire(len(buf) - headerSize)
		if n == 0 {
			break
		}
		k, err := o.f.Read(buf[headerSize : headerSize+n])
		o.afterRead(k)
		if k > 0 && !o.p.s.dead.Load() {
			putHeader(buf, typeData, o.stream, o.p.channel, k)
			_ = o.p.s.writeFrame(buf[:headerSize+k])
		}
		if k == len(buf)-headerSize && k < maxDataPayload {
			grown := 2 * k
			if grown > maxDataPayload {
				grown = maxDataPayload
			}
			buf = make([]byte, headerSize+grown)
		}
		if err != nil {
			break // EOF, EIO from a pty whose slave is closed, drain deadline, or closed
		}
	}
	if o.closeOnEnd {
		o.f.Close()
	}
	_ = o.p.s.send(typeEOF, o.stream, o.p.channel, nil)
}

// stdinWriter feeds DATA frames from the host to the workload's stdin, returning credit as the
// workload actually reads (a write to the pipe completes).
type stdinWriter struct {
	p   *process
	f   *os.File
	tty bool

	mu          sync.Mutex
	cond        *sync.Cond
	queue       [][]byte
	outstanding int // bytes received and not yet credited back
	eof         bool
	stopped     bool
	done        chan struct{} // closed when run returns: no WINDOW can follow
}

func newStdinWriter(p *process, f *os.File, tty bool) *stdinWriter {
	w := &stdinWriter{p: p, f: f, tty: tty, done: make(chan struct{})}
	w.cond = sync.NewCond(&w.mu)
	return w
}

func (w *stdinWriter) push(b []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.eof {
		return protocolErrorf("stdin DATA after EOF on channel %d", w.p.channel)
	}
	if len(b) == 0 {
		return protocolErrorf("empty stdin DATA on channel %d", w.p.channel)
	}
	if w.outstanding+len(b) > initialWindow {
		return protocolErrorf("stdin on channel %d exceeds the granted credit", w.p.channel)
	}
	w.outstanding += len(b)
	w.queue = append(w.queue, b)
	w.cond.Signal()
	return nil
}

func (w *stdinWriter) closeInput() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.eof {
		return protocolErrorf("second stdin EOF on channel %d", w.p.channel)
	}
	w.eof = true
	w.cond.Signal()
	return nil
}

// shutdown stops the writer (process gone or connection gone); a blocked write is interrupted by
// closing the file (for a pty that is the master, so call it only once output is drained or moot).
func (w *stdinWriter) shutdown() {
	w.mu.Lock()
	w.stopped = true
	w.cond.Signal()
	w.mu.Unlock()
	w.f.Close()
}

func (w *stdinWriter) run() {
	defer close(w.done)
	broken := false
	unreturned := 0
	for {
		w.mu.Lock()
		for len(w.queue) == 0 && !w.eof && !w.stopped {
			w.cond.Wait()
		}
		if w.stopped || len(w.queue) == 0 {
			eof := w.eof && !w.stopped
			w.mu.Unlock()
			if eof {
				if w.tty {
					_, _ = w.f.Write([]byte{4}) // ^D: end of input for a terminal in canonical mode
				} else {
					w.f.Close()
				}
			}
			return
		}
		b := w.queue[0]
		w.queue[0] = nil
		w.queue = w.queue[1:]
		w.mu.Unlock()

		if !broken {
			if _, err := w.f.Write(b); err != nil {
				broken = true // the workload closed stdin; later input is dropped, credit still returned
			}
		}
		w.mu.Lock()
		w.outstanding -= len(b)
		more := len(w.queue) > 0
		w.mu.Unlock()
		unreturned += len(b)
		if unreturned >= initialWindow/4 || !more {
			_ = w.p.s.sendJSON(typeWindow, streamStdin, w.p.channel, windowMessage{Credit: unreturned})
			unreturned = 0
		}
	}
}
