// `system df` and `system prune` against a real daemon: what df says a prune frees is what the prune frees; a live
// sandbox, its executions and the snapshot it was made from survive every prune; without a terminal only --force runs.
import assert from "node:assert/strict";
import { before, test } from "node:test";
import { suiteCleanup } from "../fixtures/cleanup.ts";
import { ensureBaseImage, startTestDaemon, type TestDaemon } from "../fixtures/daemon.ts";

const suite = suiteCleanup();
let daemon: TestDaemon;

before(async () => {
  // prune --all removes images: this daemon gets hard links of the machine's shared store, built first if need be
  const shared = await startTestDaemon(suite);
  await ensureBaseImage(shared);
  await shared.stop();
  daemon = await startTestDaemon(suite, { privateImages: "copy" });
  await ensureBaseImage(daemon);
});

interface Category {
  category: string;
  count: number;
  active: number;
  bytes: number;
  reclaimable_count: number;
  reclaimable_bytes: number;
  all_reclaimable_count: number;
}

async function df(): Promise<Map<string, Category>> {
  const out = await daemon.cli(["system", "df", "--json"]);
  assert.equal(out.code, 0, out.stderr);
  return new Map((JSON.parse(out.stdout) as { categories: Category[] }).categories.map((c) => [c.category, c]));
}

async function prune(args: string[]): Promise<{ removed: { category: string; id: string; bytes: number }[]; reclaimed_bytes: number }> {
  const out = await daemon.cli(["system", "prune", "--json", ...args]);
  assert.equal(out.code, 0, out.stderr);
  return JSON.parse(out.stdout);
}

async function newSandbox(args: string[] = []): Promise<string> {
  const created = await daemon.cli(["sandbox", "create", ...args]);
  assert.equal(created.code, 0, created.stderr);
  return created.stdout.trim();
}

test("prune frees what df reported, keeps everything a live sandbox uses, and needs --force without a terminal", async () => {
  const gone = await newSandbox();
  const ran = await daemon.cli(["exec", "--in", gone, "--", "sh", "-c", "head -c 300000 /dev/urandom | od -An | head -c 200000"]);
  assert.equal(ran.code, 0, ran.stderr);
  assert.equal((await daemon.cli(["sandbox", "rm", gone])).code, 0);

  const kept = await newSandbox();
  suite.after(() => daemon.cli(["sandbox", "rm", kept]));
  const keptRun = await daemon.cli(["exec", "--in", kept, "--", "sh", "-c", "echo kept > /root/kept"]);
  assert.equal(keptRun.code, 0, keptRun.stderr);
  const keptExecution = (JSON.parse((await daemon.cli(["execution", "ls", "--sandbox-id", kept, "--all", "--json"])).stdout) as { execution_id: string }[])[0]!.execution_id;
  const snapshot = (await daemon.cli(["snapshot", "create", kept])).stdout.trim();
  const fromSnapshot = await newSandbox(["--from", snapshot]);
  suite.after(() => daemon.cli(["sandbox", "rm", fromSnapshot]));
  const spare = (await daemon.cli(["snapshot", "create", kept, "--name", "spare"])).stdout.trim();

  const before = await df();
  assert.ok(before.get("sandboxes")!.reclaimable_count >= 1, "the terminated sandbox is a leftover");
  assert.ok(before.get("execution_artifacts")!.reclaimable_bytes >= 200_000, JSON.stringify(before.get("execution_artifacts")));
  assert.equal(before.get("snapshots")!.count, 2);
  assert.equal(before.get("snapshots")!.reclaimable_count, 0, "snapshots go only with --all");
  assert.equal(before.get("snapshots")!.all_reclaimable_count, 1, "the snapshot a live sandbox is made from is never reclaimable");

  const refused = await daemon.cli(["system", "prune"]);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /no terminal to confirm on; pass --force/);

  const preview = await prune(["--dry-run"]);
  const reclaimable = [...before.values()].reduce((total, c) => total + c.reclaimable_bytes, 0);
  assert.equal(preview.reclaimed_bytes, reclaimable);
  assert.ok(preview.removed.some((item) => item.category === "sandboxes" && item.id === gone));
  assert.equal((await df()).get("sandboxes")!.reclaimable_count, before.get("sandboxes")!.reclaimable_count, "a dry run removes nothing");

  const pruned = await prune(["--force"]);
  assert.equal(pruned.reclaimed_bytes, reclaimable, "prune frees what df reported");
  const after = await df();
  assert.equal(after.get("sandboxes")!.reclaimable_count, 0);
  assert.equal(after.get("execution_artifacts")!.reclaimable_count, 0);
  assert.notEqual((await daemon.cli(["sandbox", "inspect", gone])).code, 0, "the terminated sandbox is forgotten");

  const everything = await prune(["--all", "--force"]);
  assert.deepEqual(everything.removed.filter((item) => item.category === "snapshots").map((item) => item.id), [spare]);
  assert.ok(!everything.removed.some((item) => item.category === "images" && item.id === "cleanroom.local/base:bookworm"), "the image live sandboxes run on stays");
  const stillThere = await daemon.cli(["exec", "--in", fromSnapshot, "--", "cat", "/root/kept"]);
  assert.equal(stillThere.code, 0, stillThere.stderr);
  assert.equal(stillThere.stdout, "kept\n");
  assert.equal((await daemon.cli(["execution", "inspect", keptExecution])).code, 0, "a live sandbox's executions keep their output");
  assert.equal((await daemon.cli(["snapshot", "inspect", snapshot])).code, 0);
});
