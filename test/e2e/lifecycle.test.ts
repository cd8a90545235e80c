// Suspend and wake with real runc: a suspended sandbox's processes get no CPU (its cgroup's counter stands still),
// reads leave it asleep, any call that touches the guest wakes it (concurrent ones share one wake), and an idle
// sandbox is suspended by the daemon on its own.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { before, test } from "node:test";
import { suiteCleanup } from "../fixtures/cleanup.ts";
import { ensureBaseImage, hostResourcesOf, startTestDaemon, type TestDaemon } from "../fixtures/daemon.ts";

const suite = suiteCleanup();
let daemon: TestDaemon;

before(async () => {
  daemon = await startTestDaemon(suite);
  await ensureBaseImage(daemon);
});

async function inspect(on: TestDaemon, id: string): Promise<{ status: string; events: { type: string; attributes: Record<string, string> }[] }> {
  return JSON.parse((await on.cli(["sandbox", "inspect", id, "--json"])).stdout);
}

/** CPU time the sandbox's cgroup has used, in nanoseconds (cgroup v1 cpuacct or v2 cpu.stat). */
function cpuUsageNs(id: string): number {
  for (const hierarchy of ["cpuacct", "cpu,cpuacct"]) {
    try {
      return Number(readFileSync(`/sys/fs/cgroup/${hierarchy}/cleanroom/${id}/cpuacct.usage`, "utf8"));
    } catch {
      // not this layout
    }
  }
  const stat = readFileSync(`/sys/fs/cgroup/cleanroom/${id}/cpu.stat`, "utf8");
  return Number(/usage_usec (\d+)/.exec(stat)![1]) * 1000;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function cpuUsedOver(id: string, ms: number): Promise<number> {
  const start = cpuUsageNs(id);
  await sleep(ms);
  return cpuUsageNs(id) - start;
}

test("a suspended sandbox uses no CPU, reads leave it asleep, and exec, files and resume wake it", async () => {
  const id = await daemon.newSandbox();
  const burner = await daemon.cli(["exec", "--in", id, "--", "sh", "-c", "nohup sh -c 'while :; do :; done' >/dev/null 2>&1 &"]);
  assert.equal(burner.code, 0, burner.stderr);
  assert.ok((await cpuUsedOver(id, 500)) > 100_000_000, "the busy loop runs");

  const suspended = await daemon.cli(["sandbox", "suspend", id]);
  assert.equal(suspended.code, 0, suspended.stderr);
  assert.equal(suspended.stdout.trim(), `${id} SUSPENDED`);
  assert.ok((await cpuUsedOver(id, 1000)) < 5_000_000, "a frozen sandbox gets no CPU");
  assert.equal((await inspect(daemon, id)).status, "SUSPENDED", "inspecting does not wake it");
  assert.equal((await daemon.cli(["sandbox", "ls", "--json"])).code, 0);
  assert.equal((await inspect(daemon, id)).status, "SUSPENDED", "listing does not wake it");

  const [a, b] = await Promise.all([
    daemon.cli(["exec", "--in", id, "--", "echo", "a"]),
    daemon.cli(["exec", "--in", id, "--", "echo", "b"]),
  ]);
  assert.deepEqual([a.code, a.stdout, b.code, b.stdout], [0, "a\n", 0, "b\n"], `${a.stderr}${b.stderr}`);
  const afterWake = await inspect(daemon, id);
  assert.equal(afterWake.status, "READY");
  const wakes = afterWake.events.filter((e) => e.type === "status" && e.attributes.status === "WAKING");
  assert.equal(wakes.length, 1, "two concurrent execs shared one wake");
  assert.ok((await cpuUsedOver(id, 500)) > 100_000_000, "the busy loop runs again");

  assert.equal((await daemon.cli(["sandbox", "suspend", id])).code, 0);
  const local = mkdtempSync(join(tmpdir(), "cleanroom-wake-"));
  suite.after(() => rmSync(local, { recursive: true, force: true }));
  const copied = await daemon.cli(["cp", `${id}:/etc/hostname`, join(local, "hostname")]);
  assert.equal(copied.code, 0, copied.stderr);
  assert.equal((await inspect(daemon, id)).status, "READY", "a file operation wakes it");

  assert.equal((await daemon.cli(["sandbox", "suspend", id])).code, 0);
  const resumed = await daemon.cli(["sandbox", "resume", id]);
  assert.equal(resumed.stdout.trim(), `${id} READY`, resumed.stderr);

  assert.equal((await daemon.cli(["sandbox", "suspend", id])).code, 0);
  const removed = await daemon.cli(["sandbox", "rm", id]);
  assert.equal(removed.code, 0, removed.stderr);
  assert.equal((await inspect(daemon, id)).status, "STOPPED", "a suspended sandbox terminates");
});

test("an idle sandbox is suspended after sandbox_lifecycle.idle_suspend_after_seconds; a running execution keeps it awake", async () => {
  const config = mkdtempSync(join(tmpdir(), "cleanroom-idle-config-"));
  suite.after(() => rmSync(config, { recursive: true, force: true }));
  mkdirSync(join(config, "cleanroom"));
  writeFileSync(join(config, "cleanroom", "config.yaml"), "sandbox_lifecycle:\n  idle_suspend_after_seconds: 2\n  warm_pool_size: 0\n");
  const idle = await startTestDaemon(suite, { env: { XDG_CONFIG_HOME: config } });
  const id = await idle.newSandbox();

  const busy = idle.cli(["exec", "--in", id, "--", "sleep", "4"]);
  await sleep(3000);
  assert.equal((await inspect(idle, id)).status, "READY", "not suspended while an execution runs");
  assert.equal((await busy).code, 0);

  let status = "";
  for (let i = 0; i < 40 && status !== "SUSPENDED"; i++) {
    await sleep(250);
    status = (await inspect(idle, id)).status;
  }
  assert.equal(status, "SUSPENDED", "suspended after 2 s without activity");
  const woken = await idle.cli(["exec", "--in", id, "--", "echo", "awake"]);
  assert.equal(woken.stdout, "awake\n", woken.stderr);
});

test("a suspended sandbox stays suspended across a daemon crash and wakes on the next exec", async () => {
  const id = await daemon.newSandbox();
  assert.equal((await daemon.cli(["exec", "--in", id, "--", "sh", "-c", "echo before > /root/state"])).code, 0);
  assert.equal((await daemon.cli(["sandbox", "suspend", id])).code, 0);
  await daemon.crashAndRestart();
  assert.equal((await inspect(daemon, id)).status, "SUSPENDED");
  const woken = await daemon.cli(["exec", "--in", id, "--", "cat", "/root/state"]);
  assert.equal(woken.stdout, "before\n", woken.stderr);
  assert.equal((await inspect(daemon, id)).status, "READY");
});

test("a suspend that fails leaves the sandbox READY; a wake that fails makes it FAILED and releases it", async () => {
  const runc = (args: string[]) => execFileSync("runc", ["--root", join(daemon.runDir, "runc"), ...args], { stdio: "pipe" });
  // a sandbox whose container something on the host removed while it ran: freezing it cannot work
  const gone = await daemon.newSandbox();
  runc(["delete", "--force", gone]);
  const suspend = await daemon.cli(["sandbox", "suspend", gone]);
  assert.equal(suspend.code, 1);
  assert.match(suspend.stderr, /could not be suspended/);
  const afterSuspend = await inspect(daemon, gone);
  assert.equal(afterSuspend.status, "READY", "a failed suspend leaves the sandbox as it was");
  assert.ok(afterSuspend.events.some((e) => /suspend failed/.test(JSON.stringify(e))), JSON.stringify(afterSuspend.events));

  // a suspended sandbox whose container goes while it sleeps: the next exec tries to wake it and cannot
  const asleep = await daemon.newSandbox();
  assert.equal((await daemon.cli(["sandbox", "suspend", asleep])).code, 0);
  runc(["delete", "--force", asleep]);
  const exec = await daemon.cli(["exec", "--in", asleep, "--", "true"]);
  assert.notEqual(exec.code, 0);
  assert.match(exec.stderr, /wake failed/);
  const afterWake = await inspect(daemon, asleep);
  assert.equal(afterWake.status, "FAILED");
  assert.deepEqual(hostResourcesOf(daemon, asleep), [], "a sandbox that failed to wake holds no host resources");
});
