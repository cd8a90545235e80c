package main

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

type tarItem struct {
	hdr     *tar.Header
	content string
}

func readTar(t *testing.T, b []byte) []tarItem {
	t.Helper()
	var items []tarItem
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return items
		}
		if err != nil {
			t.Fatal(err)
		}
		content, _ := io.ReadAll(tr)
		items = append(items, tarItem{hdr, string(content)})
	}
}

func TestArchiveStoresASymlinkAndNeverFollowsIt(t *testing.T) {
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o600)
	dir := t.TempDir()
	os.Symlink(outside, filepath.Join(dir, "escape"))
	os.WriteFile(filepath.Join(dir, "plain"), []byte("plain"), 0o644)

	out, fe := runFileOp(t, "archive", map[string]interface{}{"dir": dir, "paths": []string{"."}, "maxBytes": 1000}, nil)
	mustSucceed(t, fe)
	items := readTar(t, out)
	if len(items) != 2 {
		t.Fatalf("got %d entries: %+v", len(items), items)
	}
	if h := items[0].hdr; h.Name != "escape" || h.Typeflag != tar.TypeSymlink || h.Linkname != outside {
		t.Fatalf("first entry %+v", h)
	}
	if h := items[1].hdr; h.Name != "plain" || items[1].content != "plain" {
		t.Fatalf("second entry %+v", h)
	}

	// Naming a path beneath the symlink must not reach through it either.
	_, fe = runFileOp(t, "archive", map[string]interface{}{"dir": dir, "paths": []string{"escape/secret"}, "maxBytes": 1000}, nil)
	mustFail(t, fe, codeFailedPrecondition)
}

func TestArchiveRefusesBadPathsAndEnforcesMaxBytes(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "big"), make([]byte, 100), 0o644)
	for _, p := range []string{"../x", "/abs", "a/../b", ""} {
		_, fe := runFileOp(t, "archive", map[string]interface{}{"dir": dir, "paths": []string{p}, "maxBytes": 1000}, nil)
		mustFail(t, fe, codeInvalidArgument)
	}
	_, fe := runFileOp(t, "archive", map[string]interface{}{"dir": dir, "paths": []string{"big"}, "maxBytes": 99}, nil)
	mustFail(t, fe, codeResourceExhausted)
}

func TestArchiveThenExtractKeepsModesMtimesSymlinksAndEmptyDirs(t *testing.T) {
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "tree", "empty"), 0o755)
	os.WriteFile(filepath.Join(src, "tree", "secret"), []byte("s3cret"), 0o600)
	os.Chmod(filepath.Join(src, "tree", "secret"), 0o600)
	mtime := time.Unix(1700000000, 123456789)
	os.Chtimes(filepath.Join(src, "tree", "secret"), mtime, mtime)
	os.Symlink("secret", filepath.Join(src, "tree", "link"))
	os.Chtimes(filepath.Join(src, "tree", "empty"), mtime, mtime)

	tarBytes, fe := runFileOp(t, "archive", map[string]interface{}{"dir": src, "paths": []string{"tree"}, "maxBytes": 1000}, nil)
	mustSucceed(t, fe)
	dst := t.TempDir()
	out, fe := runFileOp(t, "extract", map[string]interface{}{"dir": dst, "maxBytes": 1000, "maxEntries": 10}, tarBytes)
	mustSucceed(t, fe)
	if string(bytes.TrimSpace(out)) != `{"entries":4,"bytes":6}` {
		t.Fatalf("extract output %q", out)
	}
	fi, err := os.Lstat(filepath.Join(dst, "tree", "secret"))
	if err != nil || fi.Mode().Perm() != 0o600 || !fi.ModTime().Equal(mtime) {
		t.Fatalf("secret: %v %v", fi, err)
	}
	if target, _ := os.Readlink(filepath.Join(dst, "tree", "link")); target != "secret" {
		t.Fatalf("link target %q", target)
	}
	if fi, err := os.Lstat(filepath.Join(dst, "tree", "empty")); err != nil || !fi.IsDir() || !fi.ModTime().Equal(mtime) {
		t.Fatalf("empty dir: %v %v", fi, err)
	}
}
