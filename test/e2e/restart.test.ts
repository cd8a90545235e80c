import { test, before } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { suiteCleanup } from "../fixtures/cleanup.ts";
import { startTestDaemon, ensureBaseImage, hostResourcesOf, type TestDaemon } from "../fixtures/daemon.ts";

const suite = suiteCleanup();
let daemon: TestDaemon;

before(async () => {
  daemon = await startTestDaemon(suite);
  await ensureBaseImage(daemon);
});

test("after kill -9 and restart, live sandboxes are READY again and dead ones FAILED with nothing left behind", async () => {
  const survivor = (await daemon.cli(["create"])).stdout.trim();
  const victim = (await daemon.cli(["create"])).stdout.trim();
  assert.equal((await daemon.cli(["exec", "--in", survivor, "--", "sh", "-c", "echo before > /root/state"])).code, 0);

  await daemon.crashAndRestart();
  // while no daemon watched, the victim's container died
  await daemon.stop();
  execFileSync("runc", ["--root", join(daemon.runDir, "runc"), "kill", victim, "KILL"]);
  await new Promise((r) => setTimeout(r, 300));
  await daemon.crashAndRestart();

  const survived = JSON.parse((await daemon.cli(["sandbox", "inspect", survivor, "--json"])).stdout);
  assert.equal(survived.status, "READY");
  const again = await daemon.cli(["exec", "--in", survivor, "--", "cat", "/root/state"]);
  assert.equal(again.stdout, "before\n");

  const died = JSON.parse((await daemon.cli(["sandbox", "inspect", victim, "--json"])).stdout);
  assert.equal(died.status, "FAILED");
  assert.match(died.status_reason, /no longer running/);
  assert.deepEqual(hostResourcesOf(daemon, victim), []);

  assert.equal((await daemon.cli(["sandbox", "rm", survivor])).code, 0);
  assert.deepEqual(hostResourcesOf(daemon, survivor), []);
});

test("an execution running when the daemon dies is marked FAILED after the restart", async () => {
  const id = (await daemon.cli(["create"])).stdout.trim();
  const execution = await daemon.client.sandbox(id).start(["sleep", "60"]);
  await daemon.crashAndRestart();
  const inspected = JSON.parse((await daemon.cli(["execution", "inspect", execution.id, "--json"])).stdout);
  assert.equal(inspected.status, "FAILED");
  assert.match(inspected.status_reason, /daemon restarted/);
  // the sandbox itself survived and still runs commands
  assert.equal((await daemon.cli(["exec", "--in", id, "--", "echo", "ok"])).stdout, "ok\n");
});
