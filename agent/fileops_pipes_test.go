package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// Pipes from os.Pipe are non-blocking, unlike the helper's stdio: these tests also prove the waits.
const pipeTestBytes = 3<<20 + 7

func randomContent(t *testing.T) []byte {
	t.Helper()
	data := make([]byte, pipeTestBytes)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	return data
}

// runWithPipe runs one helper operation whose stdin or stdout is a pipe; the other end is fed or drained here.
func runWithPipe(t *testing.T, op string, req interface{}, stdin []byte) (stdout []byte, fe *fileError) {
	t.Helper()
	body, _ := json.Marshal(req)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	done := make(chan []byte)
	var err2 error
	if stdin != nil {
		go func() {
			w.Write(stdin)
			w.Close()
			done <- nil
		}()
		var out bytes.Buffer
		err2 = dispatchFileOp([]string{op, string(body)}, r, &out)
		r.Close() // a helper that stopped reading early must not leave the writer blocked
		<-done
		stdout = out.Bytes()
	} else {
		go func() {
			got, _ := io.ReadAll(r)
			done <- got
		}()
		err2 = dispatchFileOp([]string{op, string(body)}, nil, w)
		w.Close()
		stdout = <-done
	}
	if err2 != nil && !errors.As(err2, &fe) {
		t.Fatalf("%s failed with a non-fileError: %v", op, err2)
	}
	return stdout, fe
}

func TestReadIntoAPipeSendsExactlyThePromisedBytes(t *testing.T) {
	data := randomContent(t)
	f := filepath.Join(t.TempDir(), "f")
	os.WriteFile(f, data, 0o600)
	out, fe := runWithPipe(t, "read", map[string]interface{}{"path": f, "offset": 5, "maxBytes": len(data) - 10}, nil)
	mustSucceed(t, fe)
	header, content, _ := bytes.Cut(out, []byte("\n"))
	var e pathEntry
	if err := json.Unmarshal(header, &e); err != nil {
		t.Fatal(err)
	}
	if e.Size != int64(len(data)) || !e.Truncated || !bytes.Equal(content, data[5:len(data)-5]) {
		t.Fatalf("header %+v; content of %d bytes, equal: %v", e, len(content), bytes.Equal(content, data[5:len(data)-5]))
	}
}

func TestWriteFromAPipeKeepsEveryByte(t *testing.T) {
	data := randomContent(t)
	dest := filepath.Join(t.TempDir(), "f")
	_, fe := runWithPipe(t, "write", map[string]interface{}{"path": dest, "size": len(data), "maxBytes": len(data)}, data)
	mustSucceed(t, fe)
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, data) {
		t.Fatalf("wrote %d bytes, equal: %v", len(got), bytes.Equal(got, data))
	}
}

func TestWriteFromAPipeRefusesMoreThanTheAnnouncedSize(t *testing.T) {
	data := randomContent(t)
	dir := t.TempDir()
	_, fe := runWithPipe(t, "write", map[string]interface{}{"path": filepath.Join(dir, "f"), "size": len(data) - 1, "maxBytes": len(data)}, data)
	mustFail(t, fe, codeFailedPrecondition)
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("left behind: %v", entries)
	}
}
