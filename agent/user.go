package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// execUser is the identity a workload runs as.
type execUser struct {
	uid, gid uint32
	groups   []uint32
	home     string
}

type passwdEntry struct {
	name     string
	uid, gid uint32
	home     string
}

type groupEntry struct {
	name    string
	gid     uint32
	members []string
}

// The sandbox's account files are attacker-controlled: read a bounded amount.
const maxAccountFileBytes = 4 << 20

func parsePasswd(r io.Reader) []passwdEntry {
	var out []passwdEntry
	scanLines(r, func(fields []string) {
		if len(fields) < 7 {
			return
		}
		uid, err1 := parseID(fields[2])
		gid, err2 := parseID(fields[3])
		if err1 != nil || err2 != nil || fields[0] == "" {
			return
		}
		out = append(out, passwdEntry{name: fields[0], uid: uid, gid: gid, home: fields[5]})
	})
	return out
}

func parseGroup(r io.Reader) []groupEntry {
	var out []groupEntry
	scanLines(r, func(fields []string) {
		if len(fields) < 4 || fields[0] == "" {
			return
		}
		gid, err := parseID(fields[2])
		if err != nil {
			return
		}
		var members []string
		for _, m := range strings.Split(fields[3], ",") {
			if m = strings.TrimSpace(m); m != "" {
				members = append(members, m)
			}
		}
		out = append(out, groupEntry{name: fields[0], gid: gid, members: members})
	})
	return out
}

func scanLines(r io.Reader, fn func([]string)) {
	sc := bufio.NewScanner(io.LimitReader(r, maxAccountFileBytes))
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		fn(strings.Split(line, ":"))
	}
}

func parseID(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, err
	}
	return uint32(n), nil
}

// resolveUser turns "user[:group]" (names or numeric ids) into an identity, the way runc and Docker do:
// a numeric uid need not exist (gid then defaults to 0, home to "/"); a name must.
// Supplementary groups come from the group file unless a group is given explicitly.
func resolveUser(spec string, passwd []passwdEntry, groups []groupEntry) (execUser, error) {
	userPart, groupPart, hasGroup := strings.Cut(spec, ":")
	if userPart == "" {
		return execUser{}, fmt.Errorf("user %q: empty user name", spec)
	}
	u := execUser{home: "/"}
	var entry *passwdEntry
	if uid, err := parseID(userPart); err == nil {
		u.uid = uid
		for i := range passwd {
			if passwd[i].uid == uid {
				entry = &passwd[i]
				break
			}
		}
	} else {
		for i := range passwd {
			if passwd[i].name == userPart {
				entry = &passwd[i]
				break
			}
		}
		if entry == nil {
			return execUser{}, fmt.Errorf("unable to find user %s: no matching entries in passwd file", userPart)
		}
		u.uid = entry.uid
	}
	if entry != nil {
		u.gid = entry.gid
		if entry.home != "" {
			u.home = entry.home
		}
	}
	if hasGroup {
		if groupPart == "" {
			return execUser{}, fmt.Errorf("user %q: empty group name", spec)
		}
		if gid, err := parseID(groupPart); err == nil {
			u.gid = gid
		} else {
			found := false
			for _, g := range groups {
				if g.name == groupPart {
					u.gid, found = g.gid, true
					break
				}
			}
			if !found {
				return execUser{}, fmt.Errorf("unable to find group %s: no matching entries in group file", groupPart)
			}
		}
		u.groups = []uint32{u.gid}
		return u, nil
	}
	u.groups = []uint32{u.gid}
	if entry != nil {
		for _, g := range groups {
			if g.gid != u.gid && contains(g.members, entry.name) {
				u.groups = append(u.groups, g.gid)
			}
		}
	}
	return u, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// lookupUser resolves spec against the account files of the root the agent runs in.
func lookupUser(spec string) (execUser, error) {
	var passwd []passwdEntry
	var groups []groupEntry
	if f, err := os.Open("/etc/passwd"); err == nil {
		passwd = parsePasswd(f)
		f.Close()
	}
	if f, err := os.Open("/etc/group"); err == nil {
		groups = parseGroup(f)
		f.Close()
	}
	return resolveUser(spec, passwd, groups)
}
