package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Wire format: see PROTOCOL.md. Every frame is a 12-byte header followed by the payload.
const (
	protocolVersion = 1
	headerSize      = 12
	maxPayload      = 1 << 20 // a larger declared length is a protocol error
	// initialWindow is the credit every stream starts with, in bytes.
	initialWindow = 256 << 10
	// firstReadBytes is what one read of a workload's output (so one DATA frame) takes at first: with its header,
	// a frame of 64 KiB, one socket read on the host. While reads fill the buffer it doubles, up to a window
	// (maxDataPayload): bulk output such as a file copy then travels in a quarter of the frames, and each
	// frame costs the host a fixed amount of work, while interactive output keeps a small buffer.
	firstReadBytes = 65536 - headerSize
	maxDataPayload = initialWindow
	// maxControlPayload bounds JSON payloads; none of ours comes near it.
	maxControlPayload = 64 << 10
)

// Frame types.
const (
	typeHello  byte = 0x01 // agent -> host, channel 0, first frame of every connection
	typePing   byte = 0x02 // host -> agent, channel 0
	typePong   byte = 0x03 // agent -> host, channel 0, echoes the PING payload
	typeError  byte = 0x04 // agent -> host, channel 0, sent before the agent closes a connection for a protocol error
	typeExec   byte = 0x10 // host -> agent, opens channel N
	typeExit   byte = 0x11 // agent -> host, closes channel N
	typeSignal byte = 0x12 // host -> agent
	typeResize byte = 0x13 // host -> agent
	typeData   byte = 0x20 // both ways, raw bytes
	typeEOF    byte = 0x21 // both ways, empty payload
	typeWindow byte = 0x22 // both ways, returns credit for a stream
)

// Streams of an exec channel.
const (
	streamStdin  byte = 0
	streamStdout byte = 1
	streamStderr byte = 2
)

type frame struct {
	typ     byte
	stream  byte
	channel uint32
	payload []byte
}

// errProtocol marks errors caused by the peer's bytes (as opposed to I/O errors).
type protocolError struct{ msg string }

func (e *protocolError) Error() string { return e.msg }

func protocolErrorf(format string, args ...interface{}) error {
	return &protocolError{msg: fmt.Sprintf(format, args...)}
}

func isProtocolError(err error) bool {
	var pe *protocolError
	return errors.As(err, &pe)
}

func putHeader(b []byte, typ, stream byte, channel uint32, payloadLen int) {
	binary.BigEndian.PutUint32(b[0:4], uint32(payloadLen))
	b[4] = typ
	b[5] = stream
	b[6] = 0
	b[7] = 0
	binary.BigEndian.PutUint32(b[8:12], channel)
}

// encodeFrame returns header and payload in one slice.
func encodeFrame(typ, stream byte, channel uint32, payload []byte) []byte {
	b := make([]byte, headerSize+len(payload))
	putHeader(b, typ, stream, channel, len(payload))
	copy(b[headerSize:], payload)
	return b
}

// readFrame reads one frame. The declared length is checked before anything is allocated.
// A clean end of stream between frames is io.EOF; a stream that ends inside a frame is a protocol error.
func readFrame(r io.Reader, header []byte) (frame, error) {
	if _, err := io.ReadFull(r, header[:headerSize]); err != nil {
		if err == io.ErrUnexpectedEOF {
			return frame{}, protocolErrorf("stream ended inside a frame header")
		}
		return frame{}, err
	}
	n := binary.BigEndian.Uint32(header[0:4])
	if n > maxPayload {
		return frame{}, protocolErrorf("frame declares %d payload bytes; the limit is %d", n, maxPayload)
	}
	if header[6] != 0 || header[7] != 0 {
		return frame{}, protocolErrorf("frame flags must be zero")
	}
	f := frame{typ: header[4], stream: header[5], channel: binary.BigEndian.Uint32(header[8:12])}
	if n > 0 {
		f.payload = make([]byte, n)
		if _, err := io.ReadFull(r, f.payload); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return frame{}, protocolErrorf("stream ended inside a frame payload")
			}
			return frame{}, err
		}
	}
	return f, nil
}
