import { test, before } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { suiteCleanup } from "../fixtures/cleanup.ts";
import { startTestDaemon, ensureBaseImage, hostResourcesOf, type TestDaemon } from "../fixtures/daemon.ts";
import { assertHostHidden } from "../fixtures/isolation.ts";

const suite = suiteCleanup();
let daemon: TestDaemon;

before(async () => {
  daemon = await startTestDaemon(suite);
  await ensureBaseImage(daemon);
});

test("exec runs a command in a new sandbox, prints its output and exits 0", async () => {
  const result = await daemon.cli(["exec", "--", "echo", "hello"]);
  assert.equal(result.stderr, "");
  assert.equal(result.stdout, "hello\n");
  assert.equal(result.code, 0);
});

test("exec returns the workload's exit code, 137 when it is killed", async () => {
  assert.equal((await daemon.cli(["exec", "--", "sh", "-c", "exit 1"])).code, 1);
  assert.equal((await daemon.cli(["exec", "--", "sh", "-c", "exit 42"])).code, 42);
  assert.equal((await daemon.cli(["exec", "--", "sh", "-c", "kill -9 $$"])).code, 137);
});

test("stdin is piped through to the workload", async () => {
  const input = "line one\nline two\n".repeat(1000);
  const result = await daemon.cli(["exec", "--", "sh", "-c", "cat; echo done"], { input });
  assert.equal(result.stdout, `${input}done\n`);
  assert.equal(result.code, 0);
});

test("a 50 MiB stdout stream arrives intact", async () => {
  const result = await daemon.cli(
    ["exec", "--", "sh", "-c", "head -c 52428800 /dev/urandom > /tmp/blob && sha256sum /tmp/blob >&2 && cat /tmp/blob"],
    { timeoutMs: 180_000 },
  );
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdoutBytes.byteLength, 52_428_800);
  const insideDigest = result.stderr.split(" ")[0];
  assert.equal(createHash("sha256").update(result.stdoutBytes).digest("hex"), insideDigest);
});

test("console gives the workload a terminal", async () => {
  const result = await daemon.cli(["console", "--", "tty"]);
  assert.match(result.stdout.trim(), /^\/dev\/pts\/\d+$/);
  assert.equal(result.code, 0);
});

test("a kept sandbox keeps its files between executions, and rm releases every host resource", async () => {
  const created = await daemon.cli(["create"]);
  assert.equal(created.code, 0, created.stderr);
  const id = created.stdout.trim();
  assert.match(id, /^[a-z0-9]{12}$/);
  assert.equal((await daemon.cli(["exec", "--in", id, "--", "sh", "-c", "echo kept > /root/note"])).code, 0);
  const second = await daemon.cli(["exec", "--in", id, "--", "cat", "/root/note"]);
  assert.equal(second.stdout, "kept\n");
  assert.notDeepEqual(hostResourcesOf(daemon, id), []);

  const removed = await daemon.cli(["sandbox", "rm", id]);
  assert.equal(removed.code, 0, removed.stderr);
  assert.deepEqual(hostResourcesOf(daemon, id), []);
  const inspect = await daemon.cli(["sandbox", "inspect", id, "--json"]);
  assert.equal(JSON.parse(inspect.stdout).status, "STOPPED");
});

test("exec without --keep removes its sandbox", async () => {
  const result = await daemon.cli(["exec", "--print-sandbox-id", "--", "true"]);
  const id = result.stderr.trim();
  assert.match(id, /^[a-z0-9]{12}$/);
  const deadline = Date.now() + 10_000;
  while (hostResourcesOf(daemon, id).length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(hostResourcesOf(daemon, id), []);
});

test("a sandbox sees neither host processes nor host files", async () => {
  await assertHostHidden(daemon);
});

test("a sandbox cannot mount filesystems or load kernel modules", async () => {
  const mount = await daemon.cli(["exec", "--", "mount", "-t", "tmpfs", "none", "/mnt"]);
  assert.notEqual(mount.code, 0);
  assert.match(mount.stderr, /permission denied|not permitted/i);
  // init_module(2) is syscall 175 on x86_64
  const module = await daemon.cli(["exec", "--", "perl", "-e", 'my $b = "x"; syscall(175, $b, 1, $b) == -1 or die "init_module succeeded"; print $!+0']);
  assert.equal(module.stdout, "1"); // EPERM
});

test("runs as root inside, which is an unprivileged id on the host", async () => {
  const result = await daemon.cli(["exec", "--", "sh", "-c", "id -u; cat /proc/self/uid_map"]);
  const [uid, map] = result.stdout.trim().split("\n");
  assert.equal(uid, "0");
  const [inside, outside] = (map ?? "").trim().split(/\s+/).map(Number);
  assert.equal(inside, 0);
  assert.ok((outside ?? 0) >= 100_000, `root maps to host uid ${outside}`);
});

test("a fork bomb is stopped by the pids limit while the daemon stays healthy", async () => {
  const sandbox = await daemon.client.createSandbox();
  try {
    const pidsDir = [`/sys/fs/cgroup/pids/cleanroom/${sandbox.id}`, `/sys/fs/cgroup/cleanroom/${sandbox.id}`].find((d) => existsSync(`${d}/pids.max`));
    assert.ok(pidsDir, "the sandbox has a pids cgroup");
    const limit = Number(readFileSync(`${pidsDir}/pids.max`, "utf8"));
    assert.ok(limit > 0 && limit <= 100_000, `pids.max is ${limit}`);
    await sandbox.start(["sh", "-c", "b() { b | b & }; b"], { timeoutSeconds: 30 });
    const deniedForks = () => Number(/max (\d+)/.exec(readFileSync(`${pidsDir}/pids.events`, "utf8"))?.[1] ?? 0);
    const deadline = Date.now() + 30_000;
    while (deniedForks() === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.ok(deniedForks() > 0, "the pids limit denied forks");
    assert.ok(Number(readFileSync(`${pidsDir}/pids.current`, "utf8")) <= limit);
    const healthy = await daemon.cli(["exec", "--", "echo", "still fine"]);
    assert.equal(healthy.stdout, "still fine\n");
  } finally {
    await sandbox.terminate();
  }
  assert.deepEqual(hostResourcesOf(daemon, sandbox.id), []);
});
