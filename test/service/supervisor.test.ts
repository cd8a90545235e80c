import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { claimPidFile, isServeArgv, isSupervisorArgv, liveProcessIs } from "../../src/service/service-files.ts";
import { nextRestartDelayMs } from "../../src/service/supervisor.ts";
import { parseSystemctlShow } from "../../src/service/systemd.ts";

test("a daemon that keeps dying is restarted after 1 s, then 2, 4, 8, 16 and at most 30 s", () => {
  const delays: number[] = [];
  let delay: number | undefined;
  for (let crash = 0; crash < 7; crash++) delays.push((delay = nextRestartDelayMs(delay, 500)));
  assert.deepEqual(delays, [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]);
});

test("a daemon that stayed up a minute before dying is restarted after 1 s again", () => {
  assert.equal(nextRestartDelayMs(30_000, 59_999), 30_000);
  assert.equal(nextRestartDelayMs(30_000, 60_000), 1_000);
});

test("only the CLI's own supervisor and serve command lines count as ours", () => {
  const node = "/opt/node/bin/node";
  assert.equal(isSupervisorArgv([node, "--disable-warning=ExperimentalWarning", "/opt/cleanroom/dist/cli/main.js", "daemon", "supervise"]), true);
  assert.equal(isSupervisorArgv([node, "/opt/cleanroom/src/cli/main.ts", "daemon", "supervise"]), true);
  assert.equal(isSupervisorArgv([node, "/opt/cleanroom/dist/cli/main.js", "daemon", "status"]), false);
  assert.equal(isSupervisorArgv(["/bin/sleep", "daemon", "supervise"]), false);
  assert.equal(isServeArgv([node, "/opt/cleanroom/dist/cli/main.js", "serve", "--listen=unix:///x.sock"]), true);
  assert.equal(isServeArgv([node, "/opt/cleanroom/dist/cli/main.js", "daemon", "supervise"]), false);
  assert.equal(isServeArgv(["/usr/bin/python3", "-m", "http.server", "serve"]), false);
});

test("a pid file naming a live supervisor is not taken over; a stale one is", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "cleanroom-pid-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, "supervisor.pid");
  // a process whose command line looks like a supervisor's (node ignores the words after -e's script)
  const impostor = spawn(process.execPath, ["-e", "setTimeout(() => {}, 60_000)", "/x/cli/main.js", "daemon", "supervise"], { stdio: "ignore" });
  t.after(() => impostor.kill("SIGKILL"));
  await sleep(200);
  assert.ok(liveProcessIs(impostor.pid!, isSupervisorArgv));

  writeFileSync(path, `${impostor.pid}\n`);
  assert.throws(() => claimPidFile(path, process.pid, isSupervisorArgv), { code: "already_exists", message: new RegExp(`pid ${impostor.pid}`) });
  assert.equal(readFileSync(path, "utf8").trim(), String(impostor.pid));

  const exited = new Promise((resolve) => impostor.once("exit", resolve));
  impostor.kill("SIGKILL");
  await exited;
  claimPidFile(path, process.pid, isSupervisorArgv);
  assert.equal(readFileSync(path, "utf8").trim(), String(process.pid));
});

test("systemctl show becomes running/stopped, pid, restarts and uptime", () => {
  const running = parseSystemctlShow(
    "LoadState=loaded\nActiveState=active\nSubState=running\nMainPID=4242\nNRestarts=2\nExecMainStartTimestampMonotonic=1000000000\n",
    1_090,
  );
  assert.deepEqual(running, { loaded: true, active: true, description: "active (running)", pid: 4242, restarts: 2, uptimeSeconds: 90 });
  const stopped = parseSystemctlShow("LoadState=loaded\nActiveState=inactive\nSubState=dead\nMainPID=0\nNRestarts=0\nExecMainStartTimestampMonotonic=0\n", 5);
  assert.deepEqual(stopped, { loaded: true, active: false, description: "inactive (dead)", pid: null, restarts: 0, uptimeSeconds: null });
  assert.equal(parseSystemctlShow("LoadState=not-found\nActiveState=inactive\n", 5).loaded, false);
});
