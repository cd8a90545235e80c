import { test, before } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { suiteCleanup } from "../fixtures/cleanup.ts";
import { startTestDaemon, type TestDaemon } from "../fixtures/daemon.ts";

const suite = suiteCleanup();
let daemon: TestDaemon;

before(async () => {
  daemon = await startTestDaemon(suite);
});

interface CheckJson { name: string; status: "pass" | "warn" | "fail"; ok: boolean; detail: string; hint: string }
interface DoctorJson {
  ok: boolean;
  default_backend: string;
  summary: { pass: number; warn: number; fail: number };
  checks: CheckJson[];
  backends: { backend: string; usable: boolean; checks: CheckJson[]; capabilities: Record<string, boolean> }[];
}

const HOST_CHECKS = [
  "privileges", "runc", "crun", "runsc", "qemu", "kvm", "cgroups", "user_namespaces", "seccomp", "overlayfs",
  "network_namespaces", "nftables", "agent", "state_dir", "disk_space", "base_image",
];

function byName(report: DoctorJson, name: string): CheckJson {
  const c = report.checks.find((x) => x.name === name);
  assert.ok(c, `doctor reports ${name}`);
  return c;
}

/** A CLEANROOM_HOST nobody listens on, in a dir removed after the test. */
function nowhere(t: { after(fn: () => unknown): void }): string {
  const dir = mkdtempSync(join(tmpdir(), "cleanroom-nodaemon-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return `unix://${join(dir, "none.sock")}`;
}

test("doctor --json reports every host check with a status and a fix for each problem, within 2 s", async () => {
  const started = Date.now();
  const result = await daemon.cli(["doctor", "--json"]);
  const elapsedMs = Date.now() - started;
  assert.equal(result.code, 0, result.stdout + result.stderr);
  const report = JSON.parse(result.stdout) as DoctorJson;
  assert.ok(elapsedMs < 2_000, `doctor took ${elapsedMs} ms`);

  const names = report.checks.map((c) => c.name);
  for (const name of ["daemon", ...HOST_CHECKS, "listener", "auth", "gateway", "gateway credentials"]) assert.ok(names.includes(name), `${name} in ${names.join(", ")}`);
  for (const c of report.checks) {
    assert.ok(["pass", "warn", "fail"].includes(c.status), `${c.name}: ${c.status}`);
    assert.equal(c.ok, c.status !== "fail", c.name);
    if (c.status !== "pass") assert.ok(c.hint.length > 0, `${c.name} says how to fix it`);
  }
  assert.equal(report.ok, true);
  assert.deepEqual(report.summary, {
    pass: report.checks.filter((c) => c.status === "pass").length,
    warn: report.checks.filter((c) => c.status === "warn").length,
    fail: 0,
  });
  assert.equal(byName(report, "daemon").status, "pass");
  assert.match(byName(report, "daemon").detail, new RegExp(`reachable at ${daemon.host}`));
  // the test daemon listens on a unix socket: safe without auth
  assert.equal(byName(report, "listener").status, "pass");
  assert.match(byName(report, "listener").detail, /^unix socket /);
  assert.equal(byName(report, "auth").status, "pass");
  assert.match(byName(report, "agent").detail, /protocol 1$/);
  assert.match(byName(report, "overlayfs").detail, new RegExp(`under ${daemon.stateDir}$`));
  assert.match(byName(report, "disk_space").detail, new RegExp(`GiB free under ${daemon.stateDir}$`));
  assert.match(byName(report, "cgroups").detail, /^(v1|v2|hybrid)/);

  assert.equal(report.default_backend, "linux");
  assert.deepEqual(report.backends.map((b) => b.backend), ["linux", "gvisor", "qemu"]);
  const linux = report.backends[0]!;
  assert.equal(linux.usable, true);
  assert.equal(linux.capabilities["network.default_deny"], true);
});

test("doctor prints a line per check, a fix under each warning, and a summary", async () => {
  const result = await daemon.cli(["doctor"]);
  assert.equal(result.code, 0, result.stderr);
  const lines = result.stdout.split("\n");
  const checkLines = lines.filter((l) => /^(PASS|WARN|FAIL)  /.test(l));
  assert.ok(checkLines.some((l) => /^PASS  runc +runc version \d/.test(l)), result.stdout);
  assert.ok(checkLines.some((l) => /^PASS  daemon +reachable at /.test(l)), result.stdout);
  lines.forEach((line, i) => {
    if (/^(WARN|FAIL)  /.test(line)) assert.match(lines[i + 1] ?? "", /^      fix: \S/, `a fix under "${line}"`);
  });
  assert.match(result.stdout, /^backend linux \(default\): usable$/m);
  assert.match(result.stdout, /^  capabilities: .*network\.default_deny=true/m);
  assert.match(lines.filter(Boolean).at(-1) ?? "", /^\d+ passed, \d+ warnings, 0 failed; usable backends: linux(, gvisor)?$/);
});

test("doctor --backend exits 1 for a backend this host cannot run, and rejects an unknown one", async () => {
  const qemu = await daemon.cli(["doctor", "--backend", "qemu", "--json"]);
  assert.equal(qemu.code, 1);
  const report = JSON.parse(qemu.stdout) as DoctorJson;
  assert.equal(report.ok, false);
  assert.deepEqual(report.backends.map((b) => [b.backend, b.usable]), [["qemu", false]]);
  assert.ok(report.backends[0]!.checks.some((c) => c.status === "fail" && c.hint), "it says why, and what to do");

  const linux = await daemon.cli(["doctor", "--backend", "linux", "--json"]);
  assert.equal(linux.code, 0, linux.stdout);

  const unknown = await daemon.cli(["doctor", "--backend", "vmware"]);
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /--backend vmware: expected one of linux, gvisor, qemu \[invalid_argument\]/);
});

test("with no daemon reachable, doctor still checks the host here and warns that the daemon is not there", async (t) => {
  const host = nowhere(t);
  const result = await daemon.cli(["doctor", "--json"], { env: { CLEANROOM_HOST: host } });
  assert.equal(result.code, 0, result.stdout + result.stderr);
  const report = JSON.parse(result.stdout) as DoctorJson;
  const missing = byName(report, "daemon");
  assert.equal(missing.status, "warn");
  assert.match(missing.detail, new RegExp(`^daemon not reachable at ${host}`));
  assert.match(missing.hint, /cleanroom serve/);
  for (const name of HOST_CHECKS) byName(report, name);
  assert.equal(byName(report, "runc").status, "pass");
  // what only a running daemon knows is left out, not guessed
  assert.ok(!report.checks.some((c) => ["listener", "auth", "gateway"].includes(c.name)));
  assert.equal(report.backends.find((b) => b.backend === "linux")?.usable, true);
});

test("a failing check makes doctor exit 1 and prints how to fix it", async (t) => {
  const result = await daemon.cli(["doctor"], { env: { CLEANROOM_HOST: nowhere(t), CLEANROOM_AGENT_PATH: "/nonexistent/cleanroom-agent" } });
  assert.equal(result.code, 1, result.stdout);
  const lines = result.stdout.split("\n");
  const agent = lines.findIndex((l) => l.startsWith("FAIL  agent "));
  assert.ok(agent >= 0, result.stdout);
  assert.match(lines[agent]!, /\/nonexistent\/cleanroom-agent is missing/);
  assert.match(lines[agent + 1]!, /^      fix: rebuild the agent: bash agent\/build\.sh/);
  assert.match(result.stdout, /^backend linux \(default\): NOT usable$/m);
  assert.match(result.stdout, /\d+ passed, \d+ warnings, 1 failed; backend linux is NOT usable\n$/);
});

test("doctor --backend gvisor boots a real gVisor sandbox and says the backend is usable where runsc is installed", { skip: existsSync("/usr/bin/runsc") ? false : "runsc is not installed" }, async () => {
  const gvisor = await daemon.cli(["doctor", "--backend", "gvisor", "--json"]);
  const report = JSON.parse(gvisor.stdout) as DoctorJson;
  const backend = report.backends[0]!;
  assert.equal(backend.backend, "gvisor");
  assert.ok(backend.checks.some((c) => c.name === "runsc_boot" && c.status === "pass"), JSON.stringify(backend.checks));
  assert.equal(backend.usable, true, JSON.stringify(backend.checks));
  assert.equal(backend.capabilities["sandbox.suspend"], true);
  assert.equal(backend.capabilities["sandbox.docker"], false);
});
