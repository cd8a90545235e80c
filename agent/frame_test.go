package main

import (
	"bytes"
	"encoding/binary"
	"io"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	payloads := [][]byte{nil, []byte("x"), bytes.Repeat([]byte{0xab}, maxDataPayload)}
	var stream bytes.Buffer
	for i, p := range payloads {
		stream.Write(encodeFrame(typeData, streamStdout, uint32(i+1), p))
	}
	header := make([]byte, headerSize)
	for i, p := range payloads {
		f, err := readFrame(&stream, header)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if f.typ != typeData || f.stream != streamStdout || f.channel != uint32(i+1) || !bytes.Equal(f.payload, p) {
			t.Fatalf("frame %d decoded as %+v", i, f)
		}
	}
	if _, err := readFrame(&stream, header); err != io.EOF {
		t.Fatalf("clean end: got %v, want io.EOF", err)
	}
}

func TestFrameHeaderLayout(t *testing.T) {
	b := encodeFrame(typeExit, 0, 0x01020304, []byte("{}"))
	want := []byte{0, 0, 0, 2, typeExit, 0, 0, 0, 1, 2, 3, 4, '{', '}'}
	if !bytes.Equal(b, want) {
		t.Fatalf("encoded % x, want % x", b, want)
	}
}

func TestOversizeFrameIsRejectedBeforeAllocation(t *testing.T) {
	h := make([]byte, headerSize)
	binary.BigEndian.PutUint32(h, maxPayload+1)
	h[4] = typeData
	// no payload follows: a reader that tried to read it would see EOF, not the size error
	_, err := readFrame(bytes.NewReader(h), make([]byte, headerSize))
	if !isProtocolError(err) {
		t.Fatalf("got %v, want a protocol error", err)
	}
}

func TestTruncatedFrames(t *testing.T) {
	full := encodeFrame(typePing, 0, 0, []byte(`{"id":1}`))
	for _, cut := range []int{3, headerSize, headerSize + 2} {
		_, err := readFrame(bytes.NewReader(full[:cut]), make([]byte, headerSize))
		if !isProtocolError(err) {
			t.Fatalf("cut at %d: got %v, want a protocol error", cut, err)
		}
	}
}

func TestNonZeroFlagsAreRejected(t *testing.T) {
	b := encodeFrame(typePing, 0, 0, nil)
	b[7] = 1
	if _, err := readFrame(bytes.NewReader(b), make([]byte, headerSize)); !isProtocolError(err) {
		t.Fatalf("got %v, want a protocol error", err)
	}
}

func TestParseExecRequest(t *testing.T) {
	good := []string{
		`{"argv":["echo","hi"]}`,
		`{"shell":"echo hi","env":["A=1"],"cwd":"/tmp","user":"1000:1000","tty":{"rows":24,"cols":80},"stdin":true}`,
	}
	for _, s := range good {
		if _, err := parseExecRequest([]byte(s)); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	bad := []string{
		`{}`,
		`{"argv":[]}`,
		`{"argv":["a"],"shell":"b"}`,
		`{"argv":["a"],"env":["NOEQUALS"]}`,
		`{"argv":["a"],"env":["=v"]}`,
		`{"argv":["a\u0000b"]}`,
		`{"argv":["a"],"tty":{"rows":0,"cols":80}}`,
		`{"argv":["a"],"unknown":1}`,
		`[1,2]`,
		`{"argv":["a"]} trailing`,
	}
	for _, s := range bad {
		if _, err := parseExecRequest([]byte(s)); err == nil {
			t.Errorf("%s: accepted", s)
		}
	}
}

func TestSignalNames(t *testing.T) {
	for _, s := range signalNames {
		got, ok := parseSignal(s.name)
		if !ok || got != s.sig || signalName(got) != s.name {
			t.Errorf("%s does not round-trip", s.name)
		}
	}
	if _, ok := parseSignal("SIGNOPE"); ok {
		t.Error("SIGNOPE parsed")
	}
	if n, ok := parseSignal(signalName(40)); !ok || n != 40 {
		t.Error("SIG40 does not round-trip")
	}
}
