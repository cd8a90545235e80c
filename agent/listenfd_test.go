package main

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary act as the agent, so the inherited-descriptor mode is tested for real.
func TestMain(m *testing.M) {
	if os.Getenv("CLEANROOM_AGENT_TEST_AS_AGENT") == "1" {
		os.Unsetenv("CLEANROOM_AGENT_TEST_AS_AGENT")
		os.Args = os.Args[:1]
		main()
		return
	}
	os.Exit(m.Run())
}

func TestInheritedListenerIsHiddenFromWorkloads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	lnFile, err := ln.(*net.UnixListener).File()
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	cmd := exec.Command(os.Args[0])
	cmd.Env = []string{"CLEANROOM_AGENT_TEST_AS_AGENT=1", "CLEANROOM_AGENT_LISTEN_FD=3"}
	cmd.ExtraFiles = []*os.File{lnFile}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lnFile.Close()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})

	// two connections at once, each with its own HELLO
	var conns []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if f := mustRead(t, c); f.typ != typeHello {
			t.Fatalf("connection %d: first frame type 0x%02x", i, f.typ)
		}
		conns = append(conns, c)
	}
	c := conns[1]
	sendJSONFrame(t, c, typeExec, 1, map[string]interface{}{"argv": []string{"sh", "-c", "for f in /proc/$$/fd/*; do readlink $f; done; env"}})
	out, exit := collect(t, c, 1)
	if exit.ExitCode != 0 {
		t.Fatalf("exit %+v, stderr %q", exit, out[streamStderr])
	}
	if strings.Contains(out[streamStdout], "socket:") {
		t.Fatalf("the workload inherited a socket:\n%s", out[streamStdout])
	}
	if strings.Contains(out[streamStdout], "CLEANROOM_AGENT") {
		t.Fatalf("the workload sees the agent's environment:\n%s", out[streamStdout])
	}

	// PING is echoed as PONG
	if _, err := c.Write(encodeFrame(typePing, 0, 0, []byte(`{"id":7}`))); err != nil {
		t.Fatal(err)
	}
	f := mustRead(t, c)
	var pong struct{ ID int }
	if f.typ != typePong || json.Unmarshal(f.payload, &pong) != nil || pong.ID != 7 {
		t.Fatalf("got %+v, want PONG 7", f)
	}
}
