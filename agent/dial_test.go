package main

import (
	"bytes"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
)

// An echo server that answers once the client half-closed: the helper must pass EOF on and keep reading.
func TestPipeConnectionHalfClosesAndDrains(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		got, _ := io.ReadAll(c)
		c.Write(bytes.ToUpper(got))
		c.Close()
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if status := pipeConnection(conn.(*net.TCPConn), strings.NewReader("hello through the sandbox"), &out); status != 0 {
		t.Fatalf("status %d", status)
	}
	if out.String() != "HELLO THROUGH THE SANDBOX" {
		t.Fatalf("got %q", out.String())
	}
}

func TestDialRefusesBadPortsAndClosedOnes(t *testing.T) {
	if runDialCommand([]string{"0"}) != 1 || runDialCommand([]string{"x"}) != 1 || runDialCommand(nil) != 1 {
		t.Fatal("bad arguments must fail")
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	if runDialCommand([]string{strconv.Itoa(port)}) != 1 {
		t.Fatal("a closed port must fail")
	}
}

