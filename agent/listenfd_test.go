package main

import (
	"encoding/json"
	"fmt"
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
	stdout := execHidingAgent(t, c, "for f in /proc/$$/fd/*; do readlink $f; done; env")
	if strings.Contains(stdout, "socket:") {
		t.Fatalf("the workload inherited a socket:\n%s", stdout)
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

// The gVisor mode: the agent binds the socket path it is given, hides the variable from workloads, and serves HELLO.
func TestListenPathFromEnvironment(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.sock")
	cmd := exec.Command(os.Args[0])
	cmd.Env = []string{"CLEANROOM_AGENT_TEST_AS_AGENT=1", "CLEANROOM_AGENT_LISTEN_PATH=" + path}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})

	var c net.Conn
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		if c, err = net.Dial("unix", path); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent never listened on %s: %v", path, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if f := mustRead(t, c); f.typ != typeHello {
		t.Fatalf("first frame type 0x%02x, want HELLO", f.typ)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		t.Fatalf("socket mode %o lets others in", perm)
	}
	stdout := execHidingAgent(t, c, "env; umask")
	umask := syscall.Umask(0)
	syscall.Umask(umask)
	if !strings.Contains(stdout, fmt.Sprintf("%04o", umask)) {
		t.Fatalf("the workload inherited the socket's umask:\n%s", stdout)
	}
}

func TestListenPathMustBeAbsolute(t *testing.T) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = []string{"CLEANROOM_AGENT_TEST_AS_AGENT=1", "CLEANROOM_AGENT_LISTEN_PATH=relative.sock"}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not an absolute path") {
		t.Fatalf("want a refusal, got err %v, output %q", err, out)
	}
}

// execHidingAgent runs a shell script as execution 1 and returns its stdout; it must succeed and not see the agent's env.
func execHidingAgent(t *testing.T, c net.Conn, script string) string {
	t.Helper()
	sendJSONFrame(t, c, typeExec, 1, map[string]interface{}{"argv": []string{"sh", "-c", script}})
	out, exit := collect(t, c, 1)
	if exit.ExitCode != 0 {
		t.Fatalf("exit %+v, stderr %q", exit, out[streamStderr])
	}
	if strings.Contains(out[streamStdout], "CLEANROOM_AGENT") {
		t.Fatalf("the workload sees the agent's environment:\n%s", out[streamStdout])
	}
	return out[streamStdout]
}
