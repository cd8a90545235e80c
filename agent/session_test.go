package main

import (
	"encoding/json"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// One reaper per process: a second one would steal exit statuses. Created lazily because TestMain may
// turn this process into an agent with its own.
var (
	testReaperOnce sync.Once
	testReaper     *reaper
)

// startSession serves one end of a socketpair and returns the other.
func startSession(t *testing.T) net.Conn {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]net.Conn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	testReaperOnce.Do(func() { testReaper = newReaper() })
	go serveConn(conns[0], testReaper)
	t.Cleanup(func() { conns[1].Close() })
	_ = conns[1].SetDeadline(time.Now().Add(10 * time.Second))
	f := mustRead(t, conns[1])
	var hello helloMessage
	if f.typ != typeHello || json.Unmarshal(f.payload, &hello) != nil || hello.Protocol != protocolVersion {
		t.Fatalf("first frame %+v is not HELLO", f)
	}
	return conns[1]
}

func mustRead(t *testing.T, c net.Conn) frame {
	t.Helper()
	f, err := readFrame(c, make([]byte, headerSize))
	if err != nil {
		t.Fatalf("read frame: %v", err)
	}
	return f
}

func sendJSONFrame(t *testing.T, c net.Conn, typ byte, channel uint32, v interface{}) {
	t.Helper()
	b, _ := json.Marshal(v)
	if _, err := c.Write(encodeFrame(typ, 0, channel, b)); err != nil {
		t.Fatal(err)
	}
}

// collect reads frames of channel until EXIT and returns output per stream.
func collect(t *testing.T, c net.Conn, channel uint32) (map[byte]string, exitMessage) {
	t.Helper()
	out := map[byte]string{}
	for {
		f := mustRead(t, c)
		if f.channel != channel {
			t.Fatalf("frame for channel %d", f.channel)
		}
		switch f.typ {
		case typeData:
			out[f.stream] += string(f.payload)
		case typeExit:
			var m exitMessage
			if err := json.Unmarshal(f.payload, &m); err != nil {
				t.Fatal(err)
			}
			return out, m
		}
	}
}

func TestSessionExecEcho(t *testing.T) {
	c := startSession(t)
	sendJSONFrame(t, c, typeExec, 1, map[string]interface{}{"shell": "echo out; echo err >&2; exit 7"})
	out, exit := collect(t, c, 1)
	if out[streamStdout] != "out\n" || out[streamStderr] != "err\n" || exit.ExitCode != 7 {
		t.Fatalf("got %q %q exit %+v", out[streamStdout], out[streamStderr], exit)
	}
}

func TestSessionExecTTY(t *testing.T) {
	if _, err := os.Stat("/dev/ptmx"); err != nil {
		t.Skip("no /dev/ptmx")
	}
	c := startSession(t)
	sendJSONFrame(t, c, typeExec, 1, map[string]interface{}{"argv": []string{"sh", "-c", "tty; stty size"}, "tty": map[string]int{"rows": 12, "cols": 34}})
	out, exit := collect(t, c, 1)
	if !strings.Contains(out[streamStdout], "/dev/pts/") || !strings.Contains(out[streamStdout], "12 34") || exit.ExitCode != 0 {
		t.Fatalf("got %q exit %+v", out[streamStdout], exit)
	}
}

func TestSessionRejectsUnknownFrameType(t *testing.T) {
	c := startSession(t)
	if _, err := c.Write(encodeFrame(0x7f, 0, 0, nil)); err != nil {
		t.Fatal(err)
	}
	if f := mustRead(t, c); f.typ != typeError {
		t.Fatalf("got frame type 0x%02x, want ERROR", f.typ)
	}
	if _, err := readFrame(c, make([]byte, headerSize)); err == nil {
		t.Fatal("the connection stayed open")
	}
}
