package main

import (
	"reflect"
	"strings"
	"testing"
)

const testPasswd = `root:x:0:0:root:/root:/bin/bash
# a comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
alice:x:1000:1000:Alice:/home/alice:/bin/sh
broken line without fields
bob:x:notanumber:1:bob:/home/bob:/bin/sh
`

const testGroup = `root:x:0:
wheel:x:10:alice,root
alice:x:1000:
docker:x:999: alice , carol
`

func TestResolveUser(t *testing.T) {
	passwd := parsePasswd(strings.NewReader(testPasswd))
	groups := parseGroup(strings.NewReader(testGroup))
	cases := []struct {
		spec string
		want execUser
	}{
		{"root", execUser{uid: 0, gid: 0, groups: []uint32{0, 10}, home: "/root"}},
		{"0", execUser{uid: 0, gid: 0, groups: []uint32{0, 10}, home: "/root"}},
		{"alice", execUser{uid: 1000, gid: 1000, groups: []uint32{1000, 10, 999}, home: "/home/alice"}},
		{"1000", execUser{uid: 1000, gid: 1000, groups: []uint32{1000, 10, 999}, home: "/home/alice"}},
		{"alice:wheel", execUser{uid: 1000, gid: 10, groups: []uint32{10}, home: "/home/alice"}},
		{"alice:5", execUser{uid: 1000, gid: 5, groups: []uint32{5}, home: "/home/alice"}},
		{"4242", execUser{uid: 4242, gid: 0, groups: []uint32{0}, home: "/"}},
		{"4242:4242", execUser{uid: 4242, gid: 4242, groups: []uint32{4242}, home: "/"}},
	}
	for _, c := range cases {
		got, err := resolveUser(c.spec, passwd, groups)
		if err != nil {
			t.Errorf("%s: %v", c.spec, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: got %+v, want %+v", c.spec, got, c.want)
		}
	}
	for _, spec := range []string{"mallory", "alice:nogroup", ":0", "alice:", "bob", "99999999999"} {
		if _, err := resolveUser(spec, passwd, groups); err == nil {
			t.Errorf("%s: accepted", spec)
		}
	}
}

func TestParsePasswdSkipsMalformedLines(t *testing.T) {
	entries := parsePasswd(strings.NewReader(testPasswd))
	if len(entries) != 3 {
		t.Fatalf("got %d entries, want 3: %+v", len(entries), entries)
	}
}

func TestLookPath(t *testing.T) {
	if p, err := lookPath("sh", "/nonexistent:/bin"); err != nil || p != "/bin/sh" {
		t.Fatalf("lookPath sh = %q, %v", p, err)
	}
	if _, err := lookPath("definitely-not-a-command", "/bin:/usr/bin"); err != errNotFound {
		t.Fatalf("got %v, want errNotFound", err)
	}
	if f := classifyExecError("x", errNotFound); f.code != 127 {
		t.Fatalf("not found -> %d", f.code)
	}
	if p, _ := lookPath("./rel/x", ""); p != "./rel/x" {
		t.Fatalf("a name with a slash must be used as is, got %q", p)
	}
}
