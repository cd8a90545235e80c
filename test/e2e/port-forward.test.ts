// Port forwarding end to end: a web server inside a real sandbox (busybox httpd, copied in) is reached from the host
// through `cleanroom port-forward` and `exec --expose`: each host connection is a DialSandboxPort stream over HTTP/2
// to the daemon and an exec of the agent's dial helper inside the sandbox. Forwarding ends with the sandbox.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { before, test } from "node:test";
import { suiteCleanup } from "../fixtures/cleanup.ts";
import { ensureBaseImage, startTestDaemon, type TestDaemon } from "../fixtures/daemon.ts";
import { freePort } from "../fixtures/ports.ts";
import { startRunningCli } from "../fixtures/running-cli.ts";

const suite = suiteCleanup();
let daemon: TestDaemon;
let id: string;
let page: Buffer;

before(async () => {
  daemon = await startTestDaemon(suite);
  await ensureBaseImage(daemon);
  id = await daemon.newSandbox();
  const local = mkdtempSync(join(tmpdir(), "cleanroom-forward-"));
  suite.after(() => rmSync(local, { recursive: true, force: true }));
  page = randomBytes(3 * 1024 * 1024);
  writeFileSync(join(local, "big.bin"), page);
  for (const [from, to] of [["/bin/busybox", "/usr/local/bin/busybox"], [join(local, "big.bin"), "/srv/big.bin"]] as const) {
    assert.equal((await daemon.cli(["exec", "--in", id, "--", "mkdir", "-p", "/srv"])).code, 0);
    const copied = await daemon.cli(["cp", from, `${id}:${to}`]);
    assert.equal(copied.code, 0, copied.stderr);
  }
  const served = await daemon.cli(["exec", "--in", id, "--", "sh", "-c", "echo hello from the sandbox > /srv/index.html && busybox httpd -p 127.0.0.1:3000 -h /srv"]);
  assert.equal(served.code, 0, served.stderr);
});

/** Starts a CLI command that keeps running; resolves once its stderr says it is exposing. */
const startCli = (args: string[]) => startRunningCli(suite, args, /exposing/, { env: daemon.env });

const sha = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

test("port-forward reaches a server in the sandbox, wakes a suspended one, and stops when the sandbox goes", async () => {
  const port = await freePort();
  const forward = await startCli(["port-forward", "--in", id, `${port}:3000`, `${await freePort()}:4000`]);
  assert.match(forward.stderr(), new RegExp(`exposing 127\\.0\\.0\\.1:${port} → ${id}:3000`));

  const index = await fetch(`http://127.0.0.1:${port}/index.html`);
  assert.equal(await index.text(), "hello from the sandbox\n");
  const big = Buffer.from(await (await fetch(`http://127.0.0.1:${port}/big.bin`)).arrayBuffer());
  assert.equal(sha(big), sha(page), "3 MiB through the forward, byte for byte");

  const nothing = forward.stderr().match(/exposing 127\.0\.0\.1:(\d+) → \S+:4000/)![1];
  await assert.rejects(fetch(`http://127.0.0.1:${nothing}/`), "no server on the guest port: the connection is dropped");
  for (let i = 0; i < 40 && !forward.stderr().includes(":4000: "); i++) await new Promise((resolve) => setTimeout(resolve, 50));
  assert.match(forward.stderr(), /:4000: .*nothing accepts connections on port 4000/);

  assert.equal((await daemon.cli(["sandbox", "suspend", id])).code, 0);
  const woken = await fetch(`http://127.0.0.1:${port}/index.html`);
  assert.equal(await woken.text(), "hello from the sandbox\n", "a dial wakes a suspended sandbox");

  const exposed = await freePort();
  const exec = await startCli(["exec", "--in", id, "--expose", `${exposed}:3000`, "--", "sleep", "5"]);
  assert.equal(await (await fetch(`http://127.0.0.1:${exposed}/index.html`)).text(), "hello from the sandbox\n");
  assert.equal(await exec.exited, 0);
  await assert.rejects(fetch(`http://127.0.0.1:${exposed}/index.html`), "exec --expose forwards only while the command runs");

  assert.doesNotMatch(forward.stderr(), /:3000: /, "connections that worked leave no warnings");
  assert.equal((await daemon.cli(["sandbox", "rm", id])).code, 0);
  assert.equal(await forward.exited, 1);
  assert.match(forward.stderr(), /stopped exposing: sandbox \S+ is STOPP(ING|ED)/);
});
