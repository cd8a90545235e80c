package main

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// buildTar writes entries in order; a "content" makes a regular file unless the header says otherwise.
func buildTar(t *testing.T, items ...tarItem) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, it := range items {
		h := *it.hdr
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(it.content))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(it.content))
	}
	tw.Close()
	return buf.Bytes()
}

func fileItem(name, content string) tarItem {
	return tarItem{&tar.Header{Name: name}, content}
}

func extractInto(t *testing.T, dir string, tarBytes []byte) *fileError {
	t.Helper()
	_, fe := runFileOp(t, "extract", map[string]interface{}{"dir": dir, "maxBytes": 1 << 20, "maxEntries": 100}, tarBytes)
	return fe
}

func TestExtractRefusesNamesThatLeaveTheTarget(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "target")
	os.Mkdir(dir, 0o755)
	for _, name := range []string{"../escape", "/abs", "a/../../escape", "./../escape", ""} {
		fe := extractInto(t, dir, buildTar(t, fileItem(name, "x")))
		mustFail(t, fe, codeInvalidArgument)
	}
	if _, err := os.Lstat(filepath.Join(parent, "escape")); !os.IsNotExist(err) {
		t.Fatalf("escape was created: %v", err)
	}
}

func TestExtractNeverWritesThroughAPreexistingSymlink(t *testing.T) {
	outside := t.TempDir()
	dir := t.TempDir()
	os.Symlink(outside, filepath.Join(dir, "link"))

	fe := extractInto(t, dir, buildTar(t, fileItem("link/file", "x")))
	mustFail(t, fe, codeFailedPrecondition)
	fe = extractInto(t, dir, buildTar(t, tarItem{&tar.Header{Name: "link/sub/", Typeflag: tar.TypeDir, Mode: 0o755}, ""}))
	mustFail(t, fe, codeFailedPrecondition)
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("created outside: %v", entries)
	}
}

func TestExtractRefusesASymlinkTheArchiveItselfPlantsAsAPath(t *testing.T) {
	outside := t.TempDir()
	dir := t.TempDir()
	tarBytes := buildTar(t,
		tarItem{&tar.Header{Name: "link", Typeflag: tar.TypeSymlink, Linkname: outside}, ""},
		fileItem("link/file", "x"),
	)
	mustFail(t, extractInto(t, dir, tarBytes), codeFailedPrecondition)
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("created outside: %v", entries)
	}
}

func TestExtractReplacesAFileOrSymlinkButNotADirectory(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(outside, []byte("untouched"), 0o644)
	dir := t.TempDir()
	os.Symlink(outside, filepath.Join(dir, "f"))
	os.Mkdir(filepath.Join(dir, "d"), 0o755)

	mustSucceed(t, extractInto(t, dir, buildTar(t, fileItem("f", "new"))))
	if got, _ := os.ReadFile(outside); string(got) != "untouched" {
		t.Fatalf("wrote through the symlink: %q", got)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "f")); string(got) != "new" {
		t.Fatalf("f is %q", got)
	}
	mustFail(t, extractInto(t, dir, buildTar(t, fileItem("d", "x"))), codeFailedPrecondition)
}

func TestExtractHardlinksOnlyToFilesItExtracted(t *testing.T) {
	dir := t.TempDir()
	for _, target := range []string{"../outside", "/etc/passwd", "never-extracted"} {
		tarBytes := buildTar(t, tarItem{&tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: target}, ""})
		mustFail(t, extractInto(t, dir, tarBytes), codeInvalidArgument)
	}
	// A name that was a file and then became a symlink is no longer a valid hardlink target.
	tarBytes := buildTar(t,
		fileItem("f", "x"),
		tarItem{&tar.Header{Name: "f", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"}, ""},
		tarItem{&tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: "f"}, ""},
	)
	mustFail(t, extractInto(t, dir, tarBytes), codeInvalidArgument)

	tarBytes = buildTar(t, fileItem("g", "data"), tarItem{&tar.Header{Name: "sub/h", Typeflag: tar.TypeLink, Linkname: "./g"}, ""})
	mustSucceed(t, extractInto(t, dir, tarBytes))
	if got, _ := os.ReadFile(filepath.Join(dir, "sub", "h")); string(got) != "data" {
		t.Fatalf("hardlink content %q", got)
	}
}

func TestExtractRefusesDevicesAndEnforcesLimits(t *testing.T) {
	dir := t.TempDir()
	dev := buildTar(t, tarItem{&tar.Header{Name: "null", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3}, ""})
	mustFail(t, extractInto(t, dir, dev), codeInvalidArgument)

	two := buildTar(t, fileItem("a", "12345"), fileItem("b", "67890"))
	_, fe := runFileOp(t, "extract", map[string]interface{}{"dir": dir, "maxBytes": 9, "maxEntries": 10}, two)
	mustFail(t, fe, codeResourceExhausted)
	_, fe = runFileOp(t, "extract", map[string]interface{}{"dir": dir, "maxBytes": 100, "maxEntries": 1}, two)
	mustFail(t, fe, codeResourceExhausted)
}

func TestExtractAppliesModesWithoutTheUmask(t *testing.T) {
	dir := t.TempDir()
	tarBytes := buildTar(t,
		tarItem{&tar.Header{Name: "x/", Typeflag: tar.TypeDir, Mode: 0o777}, ""},
		tarItem{&tar.Header{Name: "x/run", Typeflag: tar.TypeReg, Mode: 0o4777}, "#!"},
	)
	mustSucceed(t, extractInto(t, dir, tarBytes))
	if fi, _ := os.Stat(filepath.Join(dir, "x")); fi.Mode().Perm() != 0o777 {
		t.Fatalf("dir mode %v", fi.Mode())
	}
	if fi, _ := os.Stat(filepath.Join(dir, "x", "run")); fi.Mode().Perm() != 0o777 || fi.Mode()&os.ModeSetuid == 0 {
		t.Fatalf("file mode %v", fi.Mode())
	}
}
