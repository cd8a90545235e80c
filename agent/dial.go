package main

// The port helper: `cleanroom-agent dial <port>`, run by the host as an ordinary EXEC (like the file helper), so a
// forwarded connection gets the exec channel's flow control and is killed when the host goes away. It connects to
// 127.0.0.1:<port> inside the sandbox's network namespace and copies stdin to the connection and the connection to
// stdout; EOF on stdin half-closes the connection. A refused connection exits 1 with one JSON error line on stderr.

import (
	"io"
	"net"
	"os"
	"strconv"
	"time"
)

const dialTimeout = 10 * time.Second

func runDialCommand(args []string) int {
	if len(args) != 1 {
		return reportFileError(fileErrorf(codeInvalidArgument, "usage: cleanroom-agent dial <port>"))
	}
	port, err := strconv.Atoi(args[0])
	if err != nil || port < 1 || port > 65535 {
		return reportFileError(fileErrorf(codeInvalidArgument, "dial: port must be 1..65535"))
	}
	conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dialTimeout)
	if err != nil {
		return reportFileError(fileErrorf(codeFailedPrecondition, "nothing accepts connections on port %d in the sandbox: %v", port, err))
	}
	return pipeConnection(conn.(*net.TCPConn), os.Stdin, os.Stdout)
}

// pipeConnection copies both ways until the connection has delivered everything; the host's EOF half-closes it.
func pipeConnection(conn *net.TCPConn, in io.Reader, out io.Writer) int {
	go func() {
		io.Copy(conn, in)
		conn.CloseWrite()
	}()
	_, err := io.Copy(out, conn)
	conn.Close()
	if err != nil {
		return 1
	}
	return 0
}
