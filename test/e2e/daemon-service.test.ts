// `cleanroom daemon …` on a host where systemd does not run (this one): install writes the unit and the fallback's
// record, start runs the daemon under Cleanroom's supervisor, which restarts it when it is killed; stop and
// uninstall leave no process and no service file behind. Everything lives in a private state dir, run dir, socket,
// unit dir and network table; the processes are ended by pid after the suite, also when a test failed.
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { cliPath, removeNetworkLeftovers, runCli, uniqueNetwork, type CliResult } from "../fixtures/daemon.ts";

const base = mkdtempSync(join(tmpdir(), "cleanroom-daemon-service-"));
chmodSync(base, 0o711);
const stateDir = join(base, "state");
const runDir = join(base, "run");
const unitDir = join(base, "systemd");
const configHome = join(base, "config");
const socket = join(base, "api.sock");
const network = uniqueNetwork("s");
const forwardingBefore = readFileSync("/proc/sys/net/ipv4/ip_forward", "utf8").trim();
const env: NodeJS.ProcessEnv = {
  ...withoutCleanroomSettings(process.env),
  CLEANROOM_STATE_DIR: stateDir,
  CLEANROOM_RUN_DIR: runDir,
  CLEANROOM_IMAGE_DIR: join(stateDir, "images"),
  CLEANROOM_HOST: `unix://${socket}`,
  XDG_CONFIG_HOME: configHome,
  CLEANROOM_NETWORK_TABLE: network.table,
  CLEANROOM_NETWORK_PREFIX: network.prefix,
  CLEANROOM_NETWORK_POOL: network.pool,
  CLEANROOM_WARM_POOL: "0",
  CLEANROOM_SYSTEMD_UNIT_DIR: unitDir,
  // the fallback even where systemd runs: this test must never install a real unit into the host's systemd
  CLEANROOM_SERVICE_MANAGER: "supervisor",
};
const unitPath = join(unitDir, "cleanroom.service");
const serviceState = join(stateDir, "service");
const serviceRun = join(runDir, "service");
/** every supervisor and daemon pid the tests saw, to end them by pid whatever happened */
const seenPids = new Set<number>();

after(() => {
  // supervisors first, so that none starts another daemon after its daemon was killed
  const pidFile = (name: string) => Number(readOptional(join(serviceRun, name))?.trim());
  for (const kind of ["supervise", "serve"] as const) {
    const pid = pidFile(kind === "supervise" ? "supervisor.pid" : "serve.pid");
    if (Number.isInteger(pid) && pid > 1) seenPids.add(pid);
    for (const seen of seenPids) if (ourProcess(seen, kind)) process.kill(seen, "SIGKILL");
  }
  removeNetworkLeftovers(network, forwardingBefore);
  rmSync(base, { recursive: true, force: true });
});

const cli = (args: string[], timeoutMs?: number) => runCli(args, env, undefined, timeoutMs);

interface StatusJson {
  manager: string;
  installed: boolean;
  state: string;
  pid: number | null;
  supervisor_pid: number | null;
  uptime_seconds: number | null;
  restarts: number;
  listen: string | null;
  unit_path: string;
  log_path: string | null;
}

async function status(): Promise<{ code: number; json: StatusJson }> {
  const result = await cli(["daemon", "status", "--json"]);
  const json = JSON.parse(result.stdout) as StatusJson;
  for (const pid of [json.pid, json.supervisor_pid]) if (pid) seenPids.add(pid);
  return { code: result.code, json };
}

function ok(result: CliResult, what: string): void {
  assert.equal(result.code, 0, `${what}: exit ${result.code}\n${result.stderr}${result.stdout}`);
}

test("before install, status says not installed (exit 4) and start says to install", async () => {
  const before = await status();
  assert.equal(before.code, 4);
  assert.equal(before.json.state, "not-installed");
  const start = await cli(["daemon", "start"]);
  assert.equal(start.code, 1);
  assert.match(start.stderr, /not installed as a service; run `cleanroom daemon install` first \[not_found\]/);
});

test("bad install and logs flags are refused with a non-zero exit and write nothing", async () => {
  const injected = await cli(["daemon", "install", "--listen", `unix://${socket}\nExecStartPre=/bin/sh -c id`]);
  assert.equal(injected.code, 1);
  assert.match(injected.stderr, /--listen: .*newline or another control character.*\[invalid_argument\]/);
  const gateway = await cli(["daemon", "install", "--gateway-listen", "everywhere"]);
  assert.equal(gateway.code, 1);
  assert.match(gateway.stderr, /--gateway-listen everywhere: expected :PORT/);
  assert.equal((await cli(["daemon", "install", "--no-such-flag"])).code, 2);
  assert.equal(existsSync(unitPath), false);
  assert.equal(existsSync(serviceState), false);
  const lines = await cli(["daemon", "logs", "-n", "many"]);
  assert.equal(lines.code, 1);
  assert.match(lines.stderr, /-n many: expected a number of lines/);
});

test("install writes a unit systemd accepts, the fallback's record and a starter config; the daemon is not yet running", async () => {
  const install = await cli(["daemon", "install", "--listen", `unix://${socket}`, "--gateway-listen", ":0", "--init-config"]);
  ok(install, "daemon install");
  assert.match(install.stdout, /systemd is not running here/);
  assert.ok(existsSync(join(configHome, "cleanroom", "config.yaml")), "starter config");

  const unit = readFileSync(unitPath, "utf8");
  assert.match(unit, new RegExp(`^ExecStart="${process.execPath}" ".*" ".*/dist/cli/main\\.js" "serve" "--listen=unix://${socket}" "--gateway-listen=:0"$`, "m"));
  assert.match(unit, new RegExp(`^Environment="CLEANROOM_STATE_DIR=${stateDir}"$`, "m"));
  assert.match(unit, new RegExp(`^Environment="CLEANROOM_NETWORK_TABLE=${network.table}"$`, "m"));
  const verify = execFileSync("systemd-analyze", ["verify", unitPath], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 60_000 });
  assert.equal(verify.trim(), "");

  const again = await cli(["daemon", "install", "--listen", `unix://${socket}`, "--gateway-listen", ":0"]);
  ok(again, "the same install again");
  assert.match(again.stdout, /\(unchanged\)/);
  const other = await cli(["daemon", "install", "--listen", `unix://${socket}`, "--gateway-listen", ":0", "--log-level", "debug"]);
  assert.equal(other.code, 1);
  assert.match(other.stderr, /already exists with other settings; pass --force to replace it \[already_exists\]/);

  const stopped = await status();
  assert.equal(stopped.code, 3);
  assert.equal(stopped.json.state, "stopped");
  assert.equal(stopped.json.listen, `unix://${socket}`);
});

test("start runs the daemon supervised and waits until it listens: the CLI reaches it, status says running (exit 0)", async () => {
  const start = await cli(["daemon", "start"]);
  ok(start, "daemon start");
  const running = await status();
  assert.equal(running.code, 0);
  assert.equal(running.json.state, "running");
  assert.equal(running.json.restarts, 0);
  assert.equal(running.json.listen, `unix://${socket}`);
  assert.ok(running.json.pid && running.json.supervisor_pid && running.json.pid !== running.json.supervisor_pid);
  assert.ok(ourProcess(running.json.supervisor_pid!, "supervise") && ourProcess(running.json.pid!, "serve"));

  const version = await cli(["version"]);
  ok(version, "version");
  assert.match(version.stdout, /^server 0\.1\.0/m);
  ok(await cli(["sandbox", "ls"]), "sandbox ls");
  const startAgain = await cli(["daemon", "start"]);
  ok(startAgain, "a second start");
  assert.equal((await status()).json.pid, running.json.pid, "a second start leaves the running daemon alone");
});

test("a daemon killed with SIGKILL is restarted by the supervisor, works again, and status counts the restart", async () => {
  const before = (await status()).json;
  process.kill(before.pid!, "SIGKILL");
  const after = await waitForStatus((s) => s.state === "running" && s.pid !== null && s.pid !== before.pid, 30_000);
  assert.equal(after.supervisor_pid, before.supervisor_pid);
  assert.equal(after.restarts, 1);
  assert.equal(alive(before.pid!), false);
  ok(await cli(["version"]), "version after the restart");
  ok(await cli(["sandbox", "ls"]), "sandbox ls after the restart");
});

test("logs -n prints the last lines of the daemon's log", async () => {
  const three = await cli(["daemon", "logs", "-n", "3"]);
  ok(three, "logs -n 3");
  assert.equal(three.stdout.trimEnd().split("\n").length, 3);
  const all = await cli(["daemon", "logs", "-n", "1000"]);
  ok(all, "logs -n 1000");
  assert.equal(all.stdout.match(/cleanroom daemon listening on unix:/g)?.length, 2, all.stdout);
  assert.match(all.stdout, /"signal":"SIGKILL".*"msg":"cleanroom serve died; restarting it"/);
});

test("logs -f follows the log while the daemon restarts", async (t) => {
  const follower = spawn(cliPath, ["daemon", "logs", "-n", "0", "-f"], { env, stdio: ["ignore", "pipe", "pipe"] });
  const exited = new Promise((resolve) => follower.once("exit", resolve));
  t.after(async () => {
    follower.kill("SIGTERM");
    await exited;
  });
  let followed = "";
  follower.stdout.on("data", (chunk: Buffer) => (followed += chunk.toString()));
  await sleep(1_000); // the follower is reading from the end of the log
  const restart = await cli(["daemon", "restart"]);
  ok(restart, "daemon restart");
  const restarted = await status();
  assert.equal(restarted.json.state, "running");
  assert.equal(restarted.json.restarts, 0, "a new supervisor counts afresh");
  const deadline = Date.now() + 10_000;
  while (!/cleanroom daemon listening on unix:/.test(followed) && Date.now() < deadline) await sleep(100);
  assert.match(followed, /"msg":"stopping"/);
  assert.match(followed, /cleanroom daemon listening on unix:/);
  assert.doesNotMatch(followed, /"signal":"SIGKILL"/, "nothing from before -f started");
});

test("install --force --restart replaces the unit and puts the running daemon on the new settings", async () => {
  const before = (await status()).json;
  const reinstall = await cli(["daemon", "install", "--listen", `unix://${socket}`, "--gateway-listen", ":0", "--log-level", "debug", "--force", "--restart"]);
  ok(reinstall, "install --force --restart");
  assert.match(reinstall.stdout, /restarted it/);
  assert.match(readFileSync(unitPath, "utf8"), /"--log-level=debug"/);
  const after = (await status()).json;
  assert.equal(after.state, "running");
  assert.notEqual(after.pid, before.pid);
  assert.equal(alive(before.supervisor_pid!), false, "the old supervisor is gone");
  const argv = readFileSync(`/proc/${after.pid}/cmdline`, "utf8").split("\0");
  assert.ok(argv.includes("--log-level=debug"), argv.join(" "));
});

test("stop ends the supervisor and the daemon, and status says stopped (exit 3)", async () => {
  const running = (await status()).json;
  const stop = await cli(["daemon", "stop"]);
  ok(stop, "daemon stop");
  assert.match(stop.stdout, /^stopped$/m);
  assert.equal(alive(running.supervisor_pid!), false, "supervisor");
  assert.equal(alive(running.pid!), false, "daemon");
  const stopped = await status();
  assert.equal(stopped.code, 3);
  assert.equal(stopped.json.state, "stopped");
  assert.match((await cli(["version"])).stdout, /^server unreachable$/m);
  const stopAgain = await cli(["daemon", "stop"]);
  ok(stopAgain, "a second stop");
  assert.match(stopAgain.stdout, /was not running/);
});

test("a daemon that cannot start fails `daemon start` with the end of its log, and nothing is left running", async (t) => {
  const configPath = join(configHome, "cleanroom", "config.yaml");
  const config = readFileSync(configPath, "utf8");
  t.after(() => writeFileSync(configPath, config));
  writeFileSync(configPath, "bogus_key: 1\n"); // serve refuses it as it starts, every time
  const start = await cli(["daemon", "start"]);
  assert.equal(start.code, 1);
  assert.match(start.stderr, /the daemon exited while starting; the log \(.*daemon\.log\) ends:\n/);
  assert.match(start.stderr, /config\.yaml:1:1: bogus_key: unknown key/);
  assert.match(start.stderr, /\[runtime_launch_failed\]$/m);
  const stopped = await status();
  assert.equal(stopped.code, 3);
  assert.equal(stopped.json.supervisor_pid, null);
  assert.equal(existsSync(join(serviceRun, "supervisor.pid")), false);
});

test("uninstall removes the unit and the fallback's files, and keeps the config and the daemon's data", async () => {
  ok(await cli(["daemon", "start"]), "start before uninstall");
  const running = (await status()).json;
  const uninstall = await cli(["daemon", "uninstall"]);
  ok(uninstall, "daemon uninstall");
  assert.equal(alive(running.supervisor_pid!), false);
  assert.equal(alive(running.pid!), false);
  assert.equal(existsSync(unitPath), false);
  assert.equal(existsSync(serviceState), false);
  assert.equal(existsSync(serviceRun), false);
  assert.ok(existsSync(join(configHome, "cleanroom", "config.yaml")), "config kept");
  assert.ok(existsSync(join(stateDir, "cleanroom.db")), "the daemon's data kept");
  assert.equal((await status()).code, 4);
});

async function waitForStatus(done: (s: StatusJson) => boolean, timeoutMs: number): Promise<StatusJson> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { json } = await status();
    if (done(json)) return json;
    if (Date.now() > deadline) throw new Error(`status never matched; last: ${JSON.stringify(json)}`);
    await sleep(200);
  }
}

/** Alive and not a zombie. */
function alive(pid: number): boolean {
  const stat = readOptional(`/proc/${pid}/stat`);
  if (stat === undefined) return false;
  const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
  return state !== "Z" && state !== "X";
}

/** A live `daemon supervise` or `serve` of this checkout's CLI (a pid alone may have been reused by now). */
function ourProcess(pid: number, kind: "supervise" | "serve"): boolean {
  const argv = readOptional(`/proc/${pid}/cmdline`)?.split("\0") ?? [];
  return alive(pid) && argv.some((word) => word.endsWith("/cli/main.js")) && argv.includes(kind);
}

function readOptional(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

/** The machine's own daemon settings must not leak into this private daemon (or its unit). */
function withoutCleanroomSettings(source: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(source).filter(([name]) => !name.startsWith("CLEANROOM_")));
}
