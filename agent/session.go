package main

import (
	"bufio"
	"encoding/json"
	"net"
	"sync"
	"sync/atomic"
)

// session serves one host connection. Its reader goroutine handles frames in order; every goroutine
// that sends takes wmu for a whole frame, so frames never interleave.
type session struct {
	conn   net.Conn
	reaper *reaper
	wmu    sync.Mutex
	dead   atomic.Bool

	mu          sync.Mutex
	procs       map[uint32]*process
	lastChannel uint32
}

func serveConn(conn net.Conn, r *reaper) {
	s := &session{conn: conn, reaper: r, procs: make(map[uint32]*process)}
	s.run()
}

func (s *session) run() {
	defer s.teardown()
	if s.sendJSON(typeHello, 0, 0, helloMessage{Protocol: protocolVersion, Agent: agentVersion}) != nil {
		return
	}
	br := bufio.NewReaderSize(s.conn, 64<<10)
	header := make([]byte, headerSize)
	for {
		f, err := readFrame(br, header)
		if err == nil {
			err = s.handle(f)
		}
		if err != nil {
			if isProtocolError(err) {
				_ = s.sendJSON(typeError, 0, 0, errorMessage{Message: truncate(err.Error(), 500)})
			}
			return
		}
	}
}

// writeFrame writes one encoded frame; a failed write closes the connection so the reader ends too.
func (s *session) writeFrame(b []byte) error {
	s.wmu.Lock()
	_, err := s.conn.Write(b)
	s.wmu.Unlock()
	if err != nil {
		s.conn.Close()
	}
	return err
}

func (s *session) send(typ, stream byte, channel uint32, payload []byte) error {
	return s.writeFrame(encodeFrame(typ, stream, channel, payload))
}

func (s *session) sendJSON(typ, stream byte, channel uint32, v interface{}) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.send(typ, stream, channel, b)
}

func (s *session) handle(f frame) error {
	switch f.typ {
	case typePing:
		if f.channel != 0 || f.stream != 0 || len(f.payload) > 1024 {
			return protocolErrorf("malformed PING")
		}
		return s.send(typePong, 0, 0, f.payload)
	case typeExec:
		if f.stream != 0 || f.channel == 0 {
			return protocolErrorf("EXEC needs a non-zero channel and stream 0")
		}
		s.mu.Lock()
		fresh := f.channel > s.lastChannel
		if fresh {
			s.lastChannel = f.channel
		}
		s.mu.Unlock()
		if !fresh {
			return protocolErrorf("EXEC on channel %d: channel ids must increase", f.channel)
		}
		s.startExec(f.channel, f.payload)
		return nil
	case typeSignal, typeResize, typeData, typeEOF, typeWindow:
		s.mu.Lock()
		p := s.procs[f.channel]
		opened := f.channel != 0 && f.channel <= s.lastChannel
		s.mu.Unlock()
		if !opened {
			return protocolErrorf("frame type 0x%02x on channel %d, which was never opened", f.typ, f.channel)
		}
		if p == nil {
			return nil // the channel has ended; the host had not seen EXIT yet
		}
		return p.handle(f)
	default:
		return protocolErrorf("unknown frame type 0x%02x", f.typ)
	}
}

func (s *session) register(p *process) {
	s.mu.Lock()
	s.procs[p.channel] = p
	s.mu.Unlock()
}

func (s *session) remove(channel uint32) {
	s.mu.Lock()
	delete(s.procs, channel)
	s.mu.Unlock()
}

// teardown runs when the connection ends for any reason: processes it started are killed.
func (s *session) teardown() {
	s.dead.Store(true)
	s.conn.Close()
	s.mu.Lock()
	procs := make([]*process, 0, len(s.procs))
	for _, p := range s.procs {
		procs = append(procs, p)
	}
	s.mu.Unlock()
	for _, p := range procs {
		p.abandon()
	}
}
