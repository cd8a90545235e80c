package main

import (
	"os"
	"path"
	"sort"
	"strings"
	"syscall"
	"unsafe"
)

// pathEntry is what the helper reports about one path (PROTOCOL.md, "File operations").
type pathEntry struct {
	Path       string `json:"path"`
	Type       string `json:"type"`
	Mode       uint32 `json:"mode"`
	Size       int64  `json:"size"`
	MtimeSec   int64  `json:"mtimeSec"`
	MtimeNsec  int64  `json:"mtimeNsec"`
	UID        uint32 `json:"uid"`
	GID        uint32 `json:"gid"`
	LinkTarget string `json:"linkTarget,omitempty"` // symlinks only; a symlink's target is never empty
	Truncated  bool   `json:"truncated,omitempty"`  // read's header only
}

// permBits are the bits a mode carries over the wire: permissions plus setuid, setgid and sticky.
const permBits = 0o7777

func entryType(mode uint32) string {
	switch mode & syscall.S_IFMT {
	case syscall.S_IFREG:
		return "file"
	case syscall.S_IFDIR:
		return "dir"
	case syscall.S_IFLNK:
		return "symlink"
	}
	return "other"
}

// entryFromStat describes st; the caller fills in linkTarget for symlinks.
func entryFromStat(path string, st *syscall.Stat_t) pathEntry {
	return pathEntry{
		Path:      path,
		Type:      entryType(st.Mode),
		Mode:      st.Mode & permBits,
		Size:      st.Size,
		MtimeSec:  st.Mtim.Sec,
		MtimeNsec: st.Mtim.Nsec,
		UID:       st.Uid,
		GID:       st.Gid,
	}
}

// describePath lstats (or stats) fsPath and reports it under the name shown.
func describePath(fsPath, shown string, follow bool) (pathEntry, error) {
	var st syscall.Stat_t
	var err error
	if follow {
		err = syscall.Stat(fsPath, &st)
	} else {
		err = syscall.Lstat(fsPath, &st)
	}
	if err != nil {
		return pathEntry{}, fsError("stat", fsPath, err)
	}
	e := entryFromStat(shown, &st)
	if e.Type == "symlink" {
		target, err := os.Readlink(fsPath)
		if err != nil {
			return pathEntry{}, fsError("readlink", fsPath, err)
		}
		e.LinkTarget = target
	}
	return e, nil
}

func fstatFile(f *os.File) (*syscall.Stat_t, error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return nil, fsError("fstat", f.Name(), err)
	}
	return &st, nil
}

const (
	atSymlinkNofollow = 0x100
	utimeOmit         = (1 << 30) - 2 // leave the access time as it is
)

// setMtimeFd sets the modification time of an open file (utimensat on the descriptor itself, so a
// path swapped meanwhile cannot redirect it).
func setMtimeFd(f *os.File, sec, nsec int64) error {
	ts := [2]syscall.Timespec{{Nsec: utimeOmit}, {Sec: sec, Nsec: nsec}}
	_, _, errno := syscall.Syscall6(syscall.SYS_UTIMENSAT, f.Fd(), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	if errno != 0 {
		return fsError("set mtime of", f.Name(), errno)
	}
	return nil
}

// setMtimeNofollow sets the modification time of path itself, a symlink's own time included.
func setMtimeNofollow(path string, sec, nsec int64) error {
	p, err := syscall.BytePtrFromString(path)
	if err != nil {
		return fsError("set mtime of", path, err)
	}
	ts := [2]syscall.Timespec{{Nsec: utimeOmit}, {Sec: sec, Nsec: nsec}}
	atFdcwd := -100
	_, _, errno := syscall.Syscall6(syscall.SYS_UTIMENSAT, uintptr(atFdcwd), uintptr(unsafe.Pointer(p)), uintptr(unsafe.Pointer(&ts[0])), atSymlinkNofollow, 0, 0)
	if errno != 0 {
		return fsError("set mtime of", path, errno)
	}
	return nil
}

// requireRealParents checks that every component between root and rel (exclusive) is a directory and
// not a symlink, so that nothing reaches through a symlink inside the tree. Missing components are
// created 0755 when create is set, and are not_found otherwise.
func requireRealParents(root, rel string, create bool) error {
	parts := strings.Split(rel, "/")
	cur := root
	for _, part := range parts[:len(parts)-1] {
		cur = path.Join(cur, part)
		var st syscall.Stat_t
		err := syscall.Lstat(cur, &st)
		switch {
		case isNotExist(err) && create:
			if err := mkdirMode(cur, 0o755); err != nil {
				return err
			}
		case err != nil:
			return fsError("stat", cur, err)
		case entryType(st.Mode) != "dir":
			return fileErrorf(codeFailedPrecondition, "%q: %s is a %s, not a directory; refusing to go through it", rel, cur, entryType(st.Mode))
		}
	}
	return nil
}

// sortedNames lists a directory's entries in lexical order; with noFollow, a symlink at full is refused
// (ELOOP) rather than read through.
func sortedNames(full string, noFollow bool) ([]string, error) {
	flags := os.O_RDONLY | syscall.O_DIRECTORY
	if noFollow {
		flags |= syscall.O_NOFOLLOW
	}
	f, err := os.OpenFile(full, flags, 0)
	if err != nil {
		return nil, fsError("open directory", full, err)
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return nil, fsError("read directory", full, err)
	}
	sort.Strings(names)
	return names, nil
}
