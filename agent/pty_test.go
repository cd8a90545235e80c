package main

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestOpenPTY(t *testing.T) {
	master, slave, name, err := openPTY()
	if err != nil {
		t.Skipf("no pty available: %v", err)
	}
	defer master.Close()
	defer syscall.Close(slave)
	if !strings.HasPrefix(name, "/dev/pts/") {
		t.Fatalf("slave name %q", name)
	}
	if err := setWinsize(master, 33, 111); err != nil {
		t.Fatal(err)
	}
	rows, cols, err := getWinsize(uintptr(slave))
	if err != nil || rows != 33 || cols != 111 {
		t.Fatalf("winsize seen on the slave: %dx%d, %v", rows, cols, err)
	}
	if _, err := syscall.Write(slave, []byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	_ = master.SetReadDeadline(time.Now().Add(2 * time.Second)) // the master is pollable
	buf := make([]byte, 64)
	n, err := master.Read(buf)
	if err != nil || !strings.Contains(string(buf[:n]), "ping") {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	// once the slave is closed the master reads EIO, which the agent treats as end of output
	syscall.Close(slave)
	slave = -1
	for {
		_, err = master.Read(buf)
		if err != nil {
			break
		}
	}
	if os.IsTimeout(err) {
		t.Fatalf("master did not report the closed slave")
	}
}
