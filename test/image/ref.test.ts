import assert from "node:assert/strict";
import { test } from "node:test";
import { isCleanroomError } from "../../src/errors/index.ts";
import { formatImageRef, parseImageRef } from "../../src/image/index.ts";
import { chooseMirror, parseDeb822Sources, parseOsReleaseCodename, parseSourcesList } from "../../src/image/apt-sources.ts";
import { parseChallenge } from "../../src/image/registry-auth.ts";
import { normalizeEntryPath } from "../../src/image/safe-path.ts";

const D = `sha256:${"a".repeat(64)}`;

test("image refs normalize like Docker's", () => {
  const cases: [string, string][] = [
    ["alpine", "docker.io/library/alpine:latest"],
    ["alpine:3.19", "docker.io/library/alpine:3.19"],
    ["user/app", "docker.io/user/app:latest"],
    ["docker.io/alpine", "docker.io/library/alpine:latest"],
    ["index.docker.io/library/alpine:1", "docker.io/library/alpine:1"],
    ["ghcr.io/org/team/app:v1.2.3", "ghcr.io/org/team/app:v1.2.3"],
    ["127.0.0.1:5000/x/y:t", "127.0.0.1:5000/x/y:t"],
    ["localhost/app", "localhost/app:latest"],
    ["localhost:5000/app@" + D, "localhost:5000/app@" + D],
    ["app:tag@" + D, "docker.io/library/app:tag@" + D],
    ["[::1]:5000/app:1", "[::1]:5000/app:1"],
    ["cleanroom.local/base:bookworm", "cleanroom.local/base:bookworm"],
    ["my_app/a__b/c-d.e:T_1", "docker.io/my_app/a__b/c-d.e:T_1"],
  ];
  for (const [input, want] of cases) assert.equal(formatImageRef(parseImageRef(input)), want, input);
});

test("bad image refs are invalid_argument with a hint", () => {
  for (const bad of ["", "UPPER/case", "a//b", "app:", "app:-bad", "app@sha256:abc", "app@md5:" + "a".repeat(32), "/app", "app/", "a..b/c",
    `sha256:${"b".repeat(64)}`, "host:99999/app", "x".repeat(600), "app:t@" + D.toUpperCase(), "a b", "app\n"]) {
    assert.throws(() => parseImageRef(bad), (e) => isCleanroomError(e, "invalid_argument") && /repository/.test(e.message), JSON.stringify(bad));
  }
});

test("WWW-Authenticate challenges parse", () => {
  assert.deepEqual(parseChallenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"'), {
    scheme: "bearer",
    params: { realm: "https://auth.docker.io/token", service: "registry.docker.io", scope: "repository:library/alpine:pull" },
  });
  assert.deepEqual(parseChallenge('Basic realm="Registry Realm"'), { scheme: "basic", params: { realm: "Registry Realm" } });
  assert.equal(parseChallenge("Negotiate"), undefined);
  assert.equal(parseChallenge(null), undefined);
});

test("tar entry paths normalize inside the layer or are refused", () => {
  assert.deepEqual(normalizeEntryPath("./usr/bin/"), { ok: true, rel: "usr/bin" });
  assert.deepEqual(normalizeEntryPath("/etc//passwd"), { ok: true, rel: "etc/passwd" });
  assert.deepEqual(normalizeEntryPath("./"), { ok: true, rel: "" });
  for (const bad of ["../x", "a/../../x", "a/..", "a\0b", `${"x".repeat(256)}/y`, "y/".repeat(2100)]) assert.equal(normalizeEntryPath(bad).ok, false, bad);
});

test("the host's apt configuration gives suite and mirror", () => {
  assert.equal(parseOsReleaseCodename('NAME="Debian"\nVERSION_CODENAME=bookworm\n'), "bookworm");
  assert.equal(parseOsReleaseCodename('VERSION_CODENAME="trixie"'), "trixie");
  assert.equal(parseOsReleaseCodename("ID=alpine"), undefined);
  const deb822 = parseDeb822Sources(`Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main

Types: deb deb-src
# a comment
URIs: http://mirror.example/debian/
Suites: bookworm bookworm-updates
Components: main contrib

Types: deb
URIs: http://disabled.example/debian
Suites: bookworm
Enabled: no
`);
  assert.equal(deb822.length, 2);
  assert.equal(chooseMirror(deb822, "bookworm"), "http://mirror.example/debian");
  const list = parseSourcesList("# x\ndeb [arch=amd64 signed-by=/k.gpg] https://deb.example/debian bookworm main\ndeb-src http://src.example bookworm main\n");
  assert.deepEqual(list[0], { types: ["deb"], uris: ["https://deb.example/debian"], suites: ["bookworm"], components: ["main"] });
  assert.equal(chooseMirror(list, "bookworm"), "https://deb.example/debian");
  assert.equal(chooseMirror(list, "trixie"), undefined);
});
