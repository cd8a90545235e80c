import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { before, test } from "node:test";
import { create as createTar } from "tar";
import { suiteCleanup } from "../fixtures/cleanup.ts";
import { startTestDaemon, type TestDaemon } from "../fixtures/daemon.ts";
import { ensureGoImage } from "../fixtures/go-image.ts";
import { goProxyTree } from "./go-proxy-tree.ts";

const suite = suiteCleanup();
let daemon: TestDaemon;
let ref: string;

before(async () => {
  daemon = await startTestDaemon(suite);
  ref = await ensureGoImage(daemon);
});

test("a sandbox from the Go image runs the host's go command", async () => {
  const expected = execFileSync("go", ["version"], { encoding: "utf8", env: { ...process.env, GOENV: "off" } }).trim();
  const result = await daemon.cli(["exec", "--image", ref, "--", "go", "version"]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.trim(), expected);
});

test("the Go image's trimmed toolchain is enough for go mod download", async () => {
  const work = mkdtempSync(join(tmpdir(), "cleanroom-go-image-"));
  suite.after(() => rmSync(work, { recursive: true, force: true }));
  const tree = goProxyTree(work);
  await tree.publish({ module: "example.test/Hello", version: "v1.0.0", files: { "go.mod": "module example.test/Hello\n\ngo 1.19\n", "hello.go": "package hello\n" } });
  // the proxy tree reaches the sandbox on stdin; GOPROXY=file:// keeps the network out of this test
  const archive = join(work, "proxy.tar.gz");
  await createTar({ gzip: true, portable: true, cwd: work, file: archive }, ["proxy"]);
  const script = [
    "set -e",
    "mkdir -p /tmp/goproxy && tar -xzf - -C /tmp/goproxy",
    "cd /tmp && go env GOROOT",
    "GOPROXY=file:///tmp/goproxy/proxy GOSUMDB=off GOFLAGS=-modcacherw GOMODCACHE=/tmp/modcache go mod download example.test/Hello@v1.0.0",
    "cat /tmp/modcache/example.test/!hello@v1.0.0/go.mod",
  ].join("\n");
  const result = await daemon.cli(["exec", "--image", ref, "--", "sh", "-c", script], { input: readFileSync(archive) });
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout, "/usr/local/go\nmodule example.test/Hello\n\ngo 1.19\n");
});
