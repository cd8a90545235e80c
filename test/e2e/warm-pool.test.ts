import { test, before } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { suiteCleanup } from "../fixtures/cleanup.ts";
import { startTestDaemon, ensureBaseImage, hostResourcesOf, type TestDaemon } from "../fixtures/daemon.ts";

const suite = suiteCleanup();
let daemon: TestDaemon;

before(async () => {
  daemon = await startTestDaemon(suite);
  await ensureBaseImage(daemon);
});

/** Sandboxes holding host resources that `sandbox ls` does not show: the warm pool's spares. */
async function hiddenSpares(): Promise<string[]> {
  const dir = join(daemon.stateDir, "sandboxes");
  const onHost = existsSync(dir) ? readdirSync(dir) : [];
  const listed = (JSON.parse((await daemon.cli(["sandbox", "ls", "--all", "--json"])).stdout) as { sandbox_id: string }[]).map((s) => s.sandbox_id);
  return onHost.filter((id) => !listed.includes(id));
}

async function waitForSpare(): Promise<string> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const spares = await hiddenSpares();
    if (spares.length === 1) return spares[0]!;
    if (Date.now() > deadline) throw new Error(`expected one spare, found ${JSON.stringify(spares)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test("a new default sandbox is a never-used warm spare, and the pool refills", async () => {
  const spare = await waitForSpare();
  const created = (await daemon.cli(["create"])).stdout.trim();
  assert.equal(created, spare);
  const inspected = JSON.parse((await daemon.cli(["sandbox", "inspect", created, "--json"])).stdout);
  assert.equal(inspected.status, "READY");
  assert.ok(Date.now() - Date.parse(inspected.created_at) < 10_000, "created_at is the hand-out time");
  const fresh = await daemon.cli(["exec", "--in", created, "--", "sh", "-c", "ls /root | wc -l"]);
  assert.equal(fresh.stdout.trim(), "0");
  const next = await waitForSpare();
  assert.notEqual(next, spare);
  await daemon.cli(["sandbox", "rm", created]);
});

test("a sandbox that asks for another image or more resources is launched, not taken from the pool", async () => {
  const spare = await waitForSpare();
  const sandbox = await daemon.client.createSandbox({ resources: { memoryMiB: 4096 } });
  assert.notEqual(sandbox.id, spare);
  assert.equal(sandbox.info.resources?.memoryMib, 4096);
  await sandbox.terminate();
});

test("spares are not visible to get, and are removed when the daemon stops", async () => {
  const spare = await waitForSpare();
  const inspect = await daemon.cli(["sandbox", "inspect", spare]);
  assert.match(inspect.stderr, /\[not_found\]/);
  await daemon.stop();
  assert.deepEqual(hostResourcesOf(daemon, spare), []);
});
