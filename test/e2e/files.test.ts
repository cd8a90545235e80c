// File operations on real sandboxes: `cleanroom cp` both ways with mode and mtime, directories as tar streams,
// limits, sandbox symlinks that try to make the copy read or write outside the sandbox or the target, and a
// 1 GiB file that streams through the daemon without the daemon holding it.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { before, test } from "node:test";
import { suiteCleanup } from "../fixtures/cleanup.ts";
import { ensureBaseImage, startTestDaemon, type TestDaemon } from "../fixtures/daemon.ts";

const suite = suiteCleanup();
let daemon: TestDaemon;
let id: string;
let local: string;

before(async () => {
  daemon = await startTestDaemon(suite);
  await ensureBaseImage(daemon);
  id = await daemon.newSandbox();
  local = mkdtempSync(join(tmpdir(), "cleanroom-cp-"));
  suite.after(() => rmSync(local, { recursive: true, force: true }));
});

const sh = (script: string) => daemon.cli(["exec", "--in", id, "--", "sh", "-c", script]);

test("a file copied in and out keeps its bytes, mode and mtime", async () => {
  const src = join(local, "tool.sh");
  const bytes = randomBytes(3 * 1024 * 1024 + 17);
  writeFileSync(src, bytes, { mode: 0o750 });
  const mtime = new Date("2024-02-03T04:05:06.789Z");
  utimesSync(src, mtime, mtime);
  const copied = await daemon.cli(["cp", src, `${id}:/tmp/in/tool.sh`]);
  assert.notEqual(copied.code, 0, "a missing parent directory is not created silently");
  assert.equal((await sh("mkdir -p /tmp/in")).code, 0);
  const again = await daemon.cli(["cp", src, `${id}:/tmp/in/`]);
  assert.equal(again.code, 0, again.stderr);
  const inside = await sh("stat -c '%a %Y' /tmp/in/tool.sh && sha256sum < /tmp/in/tool.sh");
  assert.equal(inside.stdout, `750 ${Math.floor(mtime.getTime() / 1000)}\n${createHash("sha256").update(bytes).digest("hex")}  -\n`);

  const back = join(local, "back.sh");
  const out = await daemon.cli(["cp", `${id}:/tmp/in/tool.sh`, back]);
  assert.equal(out.code, 0, out.stderr);
  assert.deepEqual(readFileSync(back), bytes);
  assert.equal(statSync(back).mode & 0o7777, 0o750);
  assert.equal(statSync(back).mtime.getTime(), mtime.getTime());
});

test("directories travel both ways, symlinks stay symlinks", async () => {
  const tree = join(local, "tree");
  mkdirSync(join(tree, "sub"), { recursive: true });
  writeFileSync(join(tree, "sub", "a.txt"), "alpha\n", { mode: 0o600 });
  writeFileSync(join(tree, "b.txt"), "beta\n");
  const copied = await daemon.cli(["cp", tree, `${id}:/srv/tree`]);
  assert.equal(copied.code, 0, copied.stderr);
  assert.equal((await sh("cat /srv/tree/sub/a.txt /srv/tree/b.txt && stat -c %a /srv/tree/sub/a.txt && ln -s sub/a.txt /srv/tree/link")).stdout, "alpha\nbeta\n600\n");

  const out = await daemon.cli(["cp", `${id}:/srv/tree`, join(local, "tree-back")]);
  assert.equal(out.code, 0, out.stderr);
  assert.equal(readFileSync(join(local, "tree-back", "sub", "a.txt"), "utf8"), "alpha\n");
  assert.ok(lstatSync(join(local, "tree-back", "link")).isSymbolicLink());
});

test("sandbox symlinks to /etc/shadow or ../../ never reach host files", async () => {
  const made = await sh("mkdir -p /srv/evil && ln -sf /etc/shadow /srv/evil/shadow && ln -sfn ../../../../../../etc /srv/evil/up && echo sandbox-secret > /etc/shadow-marker");
  assert.equal(made.code, 0, made.stderr);
  // a file through the symlink is the sandbox's own /etc/shadow, never the host's
  const shadow = join(local, "shadow-copy");
  const res = await daemon.cli(["cp", `${id}:/srv/evil/shadow`, shadow]);
  assert.equal(res.code, 0, res.stderr);
  assert.notEqual(readFileSync(shadow, "utf8"), readFileSync("/etc/shadow", "utf8"));
  // a directory copy never writes through them on the host: a climbing link is skipped with a warning
  const target = join(local, "evil-back");
  const dir = await daemon.cli(["cp", `${id}:/srv/evil`, target]);
  assert.equal(dir.code, 0, dir.stderr);
  assert.match(dir.stderr, /warning: up: linkpath escapes extraction directory/);
  assert.ok(!existsSync(join(target, "up")));
  assert.ok(lstatSync(join(target, "shadow")).isSymbolicLink());
  assert.ok(!existsSync("/etc/shadow-marker"));
  // copying into a sandbox path through its own symlink stays inside the sandbox
  writeFileSync(join(local, "note.txt"), "note\n");
  const inward = await daemon.cli(["cp", join(local, "note.txt"), `${id}:/srv/evil/up/note-from-host`]);
  assert.equal(inward.code, 0, inward.stderr);
  assert.equal((await sh("cat /etc/note-from-host")).stdout, "note\n");
  assert.ok(!existsSync("/etc/note-from-host"));
});

test("--max-bytes refuses a larger file, and a missing path is not_found", async () => {
  assert.equal((await sh("head -c 2000000 /dev/zero > /tmp/big")).code, 0);
  const res = await daemon.cli(["cp", "--max-bytes", "1MiB", `${id}:/tmp/big`, join(local, "big")]);
  assert.notEqual(res.code, 0);
  assert.match(res.stderr, /resource_exhausted/);
  assert.ok(!existsSync(join(local, "big")));
  const missing = await daemon.cli(["cp", `${id}:/nope`, join(local, "nope")]);
  assert.match(missing.stderr, /not_found/);
});

test("a 1 GiB file is copied out intact while the daemon's memory stays bounded", async (t) => {
  const back = join(local, "huge.bin");
  try {
    const made = await sh(`head -c ${1024 ** 3} /dev/urandom > /tmp/huge.bin && sha256sum < /tmp/huge.bin`);
    assert.equal(made.code, 0, made.stderr);
    const pid = daemon.process.pid!;
    const before = daemonMemoryKiB(pid, "VmRSS");
    // "5" resets the peak RSS (VmHWM) to the current RSS, so VmHWM afterwards is the copy's own peak
    writeFileSync(`/proc/${pid}/clear_refs`, "5");
    const out = await daemon.cli(["cp", `${id}:/tmp/huge.bin`, back], { timeoutMs: 300_000 });
    const growthMiB = (daemonMemoryKiB(pid, "VmHWM") - before) / 1024;
    assert.equal(out.code, 0, out.stderr);
    t.diagnostic(`daemon peak RSS growth during the copy: ${growthMiB.toFixed(0)} MiB (from ${(before / 1024).toFixed(0)} MiB)`);
    assert.equal(`${await sha256OfFile(back)}  -\n`, made.stdout);
    assert.ok(growthMiB < 200, `the daemon's RSS grew by ${growthMiB.toFixed(0)} MiB while it streamed 1 GiB`);
  } finally {
    rmSync(back, { force: true });
    await sh("rm -f /tmp/huge.bin");
  }
});

function daemonMemoryKiB(pid: number, field: "VmRSS" | "VmHWM"): number {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB$`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  assert.ok(match, `no ${field} in /proc/${pid}/status`);
  return Number(match[1]);
}

async function sha256OfFile(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}
