package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runFileOp runs one helper operation in-process and returns its stdout, or the fileError it failed with.
func runFileOp(t *testing.T, op string, req interface{}, stdin []byte) ([]byte, *fileError) {
	t.Helper()
	body, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err = dispatchFileOp([]string{op, string(body)}, bytes.NewReader(stdin), &out)
	if err == nil {
		return out.Bytes(), nil
	}
	var fe *fileError
	if !errors.As(err, &fe) {
		t.Fatalf("%s failed with a non-fileError %T: %v", op, err, err)
	}
	return out.Bytes(), fe
}

func mustFail(t *testing.T, fe *fileError, code string) {
	t.Helper()
	if fe == nil {
		t.Fatalf("succeeded; want %s", code)
	}
	if fe.code != code {
		t.Fatalf("failed with %s (%s); want %s", fe.code, fe.msg, code)
	}
}

func mustSucceed(t *testing.T, fe *fileError) {
	t.Helper()
	if fe != nil {
		t.Fatalf("failed with %s: %s", fe.code, fe.msg)
	}
}

func TestRequestPathsMustBeAbsoluteAndClean(t *testing.T) {
	for _, p := range []string{"", "relative", "/a/../b", "/a/", "/a//b", "/a\x00b"} {
		_, fe := runFileOp(t, "stat", map[string]interface{}{"path": p}, nil)
		mustFail(t, fe, codeInvalidArgument)
	}
	_, fe := runFileOp(t, "stat", map[string]interface{}{"path": "/", "bogus": true}, nil)
	mustFail(t, fe, codeInvalidArgument)
}

func TestWriteReplacesASymlinkInsteadOfWritingThroughIt(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	link := filepath.Join(dir, "link")
	os.WriteFile(target, []byte("original"), 0o600)
	os.Symlink(target, link)

	_, fe := runFileOp(t, "write", map[string]interface{}{"path": link, "maxBytes": 100}, []byte("new"))
	mustSucceed(t, fe)
	if got, _ := os.ReadFile(target); string(got) != "original" {
		t.Fatalf("the symlink's target was written: %q", got)
	}
	fi, err := os.Lstat(link)
	if err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("the link was not replaced by a regular file: %v %v", fi, err)
	}
}

func TestWriteWithTheWrongSizeLeavesNothingBehind(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(dir, "f")
	_, fe := runFileOp(t, "write", map[string]interface{}{"path": dest, "size": 10, "maxBytes": 100}, []byte("short"))
	mustFail(t, fe, codeFailedPrecondition)
	_, fe = runFileOp(t, "write", map[string]interface{}{"path": dest, "maxBytes": 3}, []byte("too long"))
	mustFail(t, fe, codeResourceExhausted)
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("left behind: %v", entries)
	}
}

func TestWriteToAMissingParentNeedsCreateParents(t *testing.T) {
	dest := filepath.Join(t.TempDir(), "a", "b", "f")
	_, fe := runFileOp(t, "write", map[string]interface{}{"path": dest, "maxBytes": 10}, []byte("x"))
	mustFail(t, fe, codeNotFound)
	_, fe = runFileOp(t, "write", map[string]interface{}{"path": dest, "maxBytes": 10, "createParents": true}, []byte("x"))
	mustSucceed(t, fe)
	fi, _ := os.Stat(filepath.Dir(dest))
	if fi.Mode().Perm() != 0o755 {
		t.Fatalf("created parent has mode %v", fi.Mode())
	}
}

func TestRemovingASymlinkToADirectoryRemovesOnlyTheLink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	os.Mkdir(target, 0o755)
	os.WriteFile(filepath.Join(target, "keep"), []byte("x"), 0o644)
	link := filepath.Join(dir, "link")
	os.Symlink(target, link)

	out, fe := runFileOp(t, "remove", map[string]interface{}{"path": link, "recursive": true}, nil)
	mustSucceed(t, fe)
	if strings.TrimSpace(string(out)) != `{"removed":true}` {
		t.Fatalf("output %q", out)
	}
	if _, err := os.Lstat(link); !os.IsNotExist(err) {
		t.Fatalf("the link is still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(target, "keep")); err != nil {
		t.Fatalf("the target's content was removed: %v", err)
	}
}

func TestRemoveRefusesTheRootAndANonEmptyDirectory(t *testing.T) {
	_, fe := runFileOp(t, "remove", map[string]interface{}{"path": "/", "recursive": true}, nil)
	mustFail(t, fe, codeInvalidArgument)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "f"), nil, 0o644)
	_, fe = runFileOp(t, "remove", map[string]interface{}{"path": dir}, nil)
	mustFail(t, fe, codeFailedPrecondition)
	out, fe := runFileOp(t, "remove", map[string]interface{}{"path": filepath.Join(dir, "missing")}, nil)
	mustSucceed(t, fe)
	if strings.TrimSpace(string(out)) != `{"removed":false}` {
		t.Fatalf("output %q", out)
	}
}

func TestReadPrintsTheHeaderThenExactlyThePromisedBytes(t *testing.T) {
	f := filepath.Join(t.TempDir(), "f")
	os.WriteFile(f, []byte("0123456789"), 0o640)
	out, fe := runFileOp(t, "read", map[string]interface{}{"path": f, "offset": 2, "maxBytes": 5}, nil)
	mustSucceed(t, fe)
	header, content, _ := bytes.Cut(out, []byte("\n"))
	var e pathEntry
	if err := json.Unmarshal(header, &e); err != nil {
		t.Fatal(err)
	}
	if e.Size != 10 || e.Mode != 0o640 || !e.Truncated || string(content) != "23456" {
		t.Fatalf("header %+v, content %q", e, content)
	}
	_, fe = runFileOp(t, "read", map[string]interface{}{"path": filepath.Dir(f), "maxBytes": 5}, nil)
	mustFail(t, fe, codeFailedPrecondition)
}

func TestWalkStopsAtMaxEntriesAndSaysSo(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"a", "b", "c"} {
		os.WriteFile(filepath.Join(dir, name), nil, 0o644)
	}
	out, fe := runFileOp(t, "walk", map[string]interface{}{"path": dir, "maxEntries": 2}, nil)
	mustSucceed(t, fe)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], `"path":"a"`) || lines[2] != `{"truncated":true}` {
		t.Fatalf("walk output %q", lines)
	}
}
