// Snapshots end to end: a sandbox's own writes (new files, changed modes, deletions of image files, a directory
// replaced wholesale) are copied frozen, and `--from` makes new sandboxes with exactly that filesystem.
import assert from "node:assert/strict";
import { before, test } from "node:test";
import { suiteCleanup } from "../fixtures/cleanup.ts";
import { ensureBaseImage, startTestDaemon, type TestDaemon } from "../fixtures/daemon.ts";

const suite = suiteCleanup();
let daemon: TestDaemon;

before(async () => {
  daemon = await startTestDaemon(suite);
  await ensureBaseImage(daemon);
});

const sh = (id: string, script: string) => daemon.cli(["exec", "--in", id, "--", "sh", "-c", script]);

test("a snapshot keeps a sandbox's files, modes and deletions; --from starts new sandboxes from it", async () => {
  const source = await daemon.newSandbox();
  const prepared = await sh(source, [
    "mkdir -p /root/work && echo kept > /root/work/data && chmod 640 /root/work/data",
    "rm /etc/debian_version",
    "rm -rf /usr/share/doc && mkdir /usr/share/doc && echo only > /usr/share/doc/only",
    "ln -s /root/work/data /root/link",
  ].join(" && "));
  assert.equal(prepared.code, 0, prepared.stderr);

  const made = await daemon.cli(["snapshot", "create", source, "--name", "prepared", "--json"]);
  assert.equal(made.code, 0, made.stderr);
  const snapshot = JSON.parse(made.stdout) as { snapshot_id: string; name: string; sandbox_id: string; disk_bytes: number };
  assert.match(snapshot.snapshot_id, /^snap-[a-z0-9]{12}$/);
  assert.equal(snapshot.name, "prepared");
  assert.equal(snapshot.sandbox_id, source);
  assert.ok(snapshot.disk_bytes > 0);
  assert.equal((await sh(source, "echo after-snapshot > /root/work/later")).code, 0, "the source runs on after the copy");

  const restored = await daemon.newSandbox(["--from", snapshot.snapshot_id]);
  const seen = await sh(restored, "cat /root/work/data; stat -c %a /root/work/data; test -e /etc/debian_version || echo gone; ls /usr/share/doc; readlink /root/link; test -e /root/work/later || echo not-later");
  assert.equal(seen.code, 0, seen.stderr);
  assert.deepEqual(seen.stdout.trim().split("\n"), ["kept", "640", "gone", "only", "/root/work/data", "not-later"]);
  const inspected = JSON.parse((await daemon.cli(["sandbox", "inspect", restored, "--json"])).stdout) as { from_snapshot_id: string };
  assert.equal(inspected.from_snapshot_id, snapshot.snapshot_id);

  const once = await daemon.cli(["exec", "--from", snapshot.snapshot_id, "--", "cat", "/root/work/data"]);
  assert.equal(once.code, 0, once.stderr);
  assert.equal(once.stdout, "kept\n");

  const listed = JSON.parse((await daemon.cli(["snapshot", "ls", "--json"])).stdout) as { snapshot_id: string }[];
  assert.ok(listed.some((s) => s.snapshot_id === snapshot.snapshot_id));
  const busy = await daemon.cli(["snapshot", "rm", snapshot.snapshot_id]);
  assert.notEqual(busy.code, 0);
  assert.match(busy.stderr, /is the base of live sandbox/);
  assert.ok(busy.stderr.includes(restored), busy.stderr);
  assert.equal((await daemon.cli(["sandbox", "rm", restored])).code, 0);
  // exec's own sandbox is removed in the background: the snapshot is free once that teardown is done
  let removed = await daemon.cli(["snapshot", "rm", snapshot.snapshot_id]);
  for (let i = 0; i < 40 && removed.code !== 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 250));
    removed = await daemon.cli(["snapshot", "rm", snapshot.snapshot_id]);
  }
  assert.equal(removed.code, 0, removed.stderr);
  const missing = await daemon.cli(["snapshot", "inspect", snapshot.snapshot_id]);
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /no snapshot with id/);
});
