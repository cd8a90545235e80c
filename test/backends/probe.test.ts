import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sandboxIdRange } from "../../src/config/index.ts";
import { createLinuxBackend, probeHost, type HostCheck, type ProbeCheck } from "../../src/backends/index.ts";
import { checkAgent } from "../../src/backends/probes/agent.ts";
import { checkKvm } from "../../src/backends/probes/kvm.ts";
import { listenerChecks } from "../../src/backends/probes/listener.ts";
import { diskSpaceCheck } from "../../src/backends/probes/storage.ts";
import { testAgentPath } from "./fixtures.ts";

function check<C extends { name: string }>(checks: C[], name: string): C {
  const c = checks.find((x) => x.name === name);
  assert.ok(c, `check ${name} reported`);
  return c;
}

/** A temp dir the sandbox's root could walk through (mkdtemp makes 0700), removed after the test. */
async function openTempDir(t: { after(fn: () => unknown): void }): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), "cleanroom-probe-"));
  t.after(() => rm(root, { recursive: true, force: true }));
  await chmod(root, 0o711);
  return root;
}

const GiB = 1024 ** 3;

test("probeHost reports this machine's runtimes, kernel features and which backends are usable", async (t) => {
  const root = await openTempDir(t);
  const opts = { stateDir: join(root, "state"), agentPath: testAgentPath(), idRange: sandboxIdRange };
  const { checks, backends } = await probeHost(opts);

  const runc = check(checks, "runc");
  assert.equal(runc.status, "pass");
  assert.match(runc.detail, /runc version 1\.\d+/);
  assert.match(check(checks, "seccomp").detail, /libseccomp/);
  for (const name of ["seccomp", "user_namespaces", "overlayfs", "network_namespaces", "state_dir", "disk_space"]) {
    assert.equal(check(checks, name).status, "pass", JSON.stringify(check(checks, name)));
  }
  const mode = existsSync("/sys/fs/cgroup/cgroup.controllers") ? "v2" : existsSync("/sys/fs/cgroup/unified") ? "hybrid" : "v1";
  assert.match(check(checks, "cgroups").detail, new RegExp(`^${mode}`));
  assert.equal(check(checks, "nftables").status, existsSync("/usr/sbin/nft") ? "pass" : "warn");
  // the version comes from the agent binary itself, over the protocol
  assert.match(check(checks, "agent").detail, /cleanroom-agent \S+, protocol 1$/);
  // optional runtimes and KVM never fail the host: their absence is a warn (or, for crun, nothing at all)
  for (const name of ["crun", "runsc", "qemu", "kvm"]) assert.notEqual(check(checks, name).status, "fail", name);
  if (!existsSync("/dev/kvm")) assert.match(check(checks, "kvm").detail, /QEMU will use TCG/);

  assert.deepEqual(backends.map((b) => b.backend), ["linux", "gvisor", "qemu"]);
  const linux = backends[0]!;
  assert.equal(linux.usable, true, JSON.stringify(linux.checks.filter((c) => c.status === "fail")));
  assert.equal(linux.capabilities["network.default_deny"], true);
  assert.equal(linux.capabilities["network.allowlist_egress"], false);
  assert.equal(linux.capabilities["sandbox.user_namespace"], true);
  // gvisor is usable exactly where runsc boots a sandbox (a real `runsc do true`); qemu is not built yet
  const gvisor = backends[1]!;
  const runscBoots = gvisor.checks.find((c) => c.name === "runsc_boot")?.status === "pass";
  assert.equal(gvisor.usable, runscBoots, JSON.stringify(gvisor.checks));
  if (runscBoots) assert.equal(gvisor.capabilities["sandbox.user_namespace"], false, "runsc runs without the user namespace");
  for (const b of [...(runscBoots ? [] : [gvisor]), backends[2]!]) {
    assert.equal(b.usable, false);
    assert.ok(b.checks.some((c) => c.status === "fail" && c.detail.length > 0), `${b.backend} says why it is not usable`);
  }
});

test("every warn and fail carries a fix hint, and every pass none", async (t) => {
  const root = await openTempDir(t);
  const { checks, backends } = await probeHost({
    stateDir: join(root, "state"),
    agentPath: join(root, "missing-agent"),
    idRange: sandboxIdRange,
    defaultImage: { ref: "cleanroom.local/base:bookworm", find: async () => undefined },
    listener: { url: "http://10.1.2.3:7777", authRequired: false },
  });
  const all: HostCheck[] = [...checks, ...backends.flatMap((b) => b.checks)];
  for (const c of all) {
    assert.ok(["pass", "warn", "fail"].includes(c.status), `${c.name}: ${c.status}`);
    assert.equal(c.hint.length > 0, c.status !== "pass", `${c.name} (${c.status}): hint ${JSON.stringify(c.hint)}`);
  }
  assert.equal(check(checks, "agent").status, "fail");
  assert.match(check(checks, "agent").hint, /agent\/build\.sh/);
  assert.equal(check(checks, "base_image").status, "warn");
  assert.equal(check(checks, "base_image").hint, "cleanroom system warmup");
  assert.equal(backends[0]?.usable, false, "no agent, no linux backend");
});

test("probes leave no mount, temp dir or agent process behind", async (t) => {
  const root = await openTempDir(t);
  const stateDir = join(root, "state");
  await mkdir(stateDir);
  const agentTemps = () => readdirSync(tmpdir()).filter((n) => n.startsWith("cleanroom-doctor-agent-"));
  const agentTempsBefore = agentTemps();
  const started = performance.now();
  const { checks } = await probeHost({ stateDir, agentPath: testAgentPath(), idRange: sandboxIdRange });
  assert.ok(performance.now() - started < 2_000, `doctor's probes took ${Math.round(performance.now() - started)} ms`);
  assert.equal(check(checks, "overlayfs").status, "pass");
  assert.match(check(checks, "overlayfs").detail, new RegExp(stateDir));
  assert.deepEqual(readdirSync(stateDir), [], "the overlay probe's dir is gone");
  assert.ok(!readFileSync("/proc/self/mounts", "utf8").includes(root), "no probe mount left");
  assert.deepEqual(agentTemps().filter((n) => !agentTempsBefore.includes(n)), [], "the agent probe's socket dir is gone");
  const agents = readdirSync("/proc").filter((p) => /^\d+$/.test(p)).filter((p) => {
    try {
      return readFileSync(`/proc/${p}/cmdline`, "utf8").includes("cleanroom-doctor-agent-");
    } catch {
      return false;
    }
  });
  assert.deepEqual(agents, [], "no probe agent still running");
});

test("a state dir the sandbox's root cannot reach fails, with the chmod that fixes it", async (t) => {
  const root = await mkdtemp(join(tmpdir(), "cleanroom-probe-"));
  t.after(() => rm(root, { recursive: true, force: true }));
  // mkdtemp made root 0700: the sandbox's root could not walk to the state dir
  const { checks, backends } = await probeHost({ stateDir: join(root, "state"), agentPath: testAgentPath(), idRange: sandboxIdRange });
  const stateDir = check(checks, "state_dir");
  assert.equal(stateDir.status, "fail");
  assert.equal(stateDir.hint, `chmod o+x ${root}`);
  assert.equal(backends[0]?.usable, false);
});

test("an agent binary that speaks another protocol version fails, with the rebuild hint", async (t) => {
  const root = await openTempDir(t);
  const fake = join(root, "old-agent.mjs");
  // answers every connection with HELLO protocol 99 on the --listen socket
  await writeFile(fake, `
    import { createServer } from "node:net";
    const path = process.argv[process.argv.indexOf("--listen") + 1];
    const payload = Buffer.from(JSON.stringify({ protocol: 99, agent: "9.9.9" }));
    const header = Buffer.alloc(12);
    header.writeUInt32BE(payload.length, 0);
    header[4] = 0x01;
    const server = createServer((socket) => socket.end(Buffer.concat([header, payload]))).listen(path);
    process.on("SIGTERM", () => server.close(() => process.exit(0)));
  `);
  const agentPath = join(root, "old-agent");
  await writeFile(agentPath, `#!/bin/sh\nexec "${process.execPath}" "${fake}" "$@"\n`, { mode: 0o755 });
  const agent = await checkAgent(agentPath);
  assert.equal(agent.status, "fail");
  assert.match(agent.detail, /cleanroom-agent 9\.9\.9\) speaks protocol 99; this daemon speaks 1/);
  assert.match(agent.hint, /agent\/build\.sh/);
});

test("KVM that cannot create a VM is a warn that QEMU falls back to TCG, never a fail", async (t) => {
  const root = await openTempDir(t);
  const missing = await checkKvm({ device: join(root, "no-kvm"), qemu: join(root, "no-qemu") });
  assert.equal(missing.status, "warn");
  assert.match(missing.detail, /^no .*no-kvm: QEMU will use TCG/);

  // a device that opens, and a qemu that fails like it does on a PVM-only host
  const device = join(root, "kvm");
  await writeFile(device, "");
  const refusing = join(root, "qemu-refusing");
  await writeFile(refusing, "#!/bin/sh\necho 'qemu-system-x86_64: failed to initialize kvm: Invalid argument' >&2\nexit 1\n", { mode: 0o755 });
  const refused = await checkKvm({ device, qemu: refusing });
  assert.equal(refused.status, "warn");
  assert.match(refused.detail, /failed to initialize kvm: Invalid argument.*QEMU will use TCG/);
  assert.ok(refused.hint.length > 0);

  const noQemu = await checkKvm({ device, qemu: join(root, "no-qemu") });
  assert.equal(noQemu.status, "warn");
  assert.match(noQemu.detail, /no VM could be created/);

  const working = join(root, "qemu-working");
  await writeFile(working, "#!/bin/sh\ncat >/dev/null\nexit 0\n", { mode: 0o755 });
  const ok = await checkKvm({ device, qemu: working });
  assert.equal(ok.status, "pass");
});

test("a unix socket or loopback listener passes; beyond loopback, plain http warns and missing auth fails", () => {
  const statuses = (url: string, authRequired = false) => listenerChecks({ url, authRequired }).map((c) => `${c.name}:${c.status}`);
  assert.deepEqual(statuses("unix:///var/run/cleanroom/cleanroom.sock"), ["listener:pass", "auth:pass"]);
  assert.deepEqual(statuses("/run/cleanroom.sock"), ["listener:pass", "auth:pass"]);
  assert.deepEqual(statuses("http://127.0.0.1:7777"), ["listener:pass", "auth:pass"]);
  assert.deepEqual(statuses("https://[::1]:7777"), ["listener:pass", "auth:pass"]);
  assert.deepEqual(statuses("https://0.0.0.0:7777"), ["listener:pass", "auth:fail"]);
  assert.deepEqual(statuses("https://cleanroom.example.com:7777", true), ["listener:pass", "auth:pass"]);
  assert.deepEqual(statuses("http://10.0.0.5:7777", true), ["listener:warn", "auth:pass"]);
  assert.deepEqual(statuses("http://10.0.0.5:7777"), ["listener:warn", "auth:fail"]);
  const auth = check(listenerChecks({ url: "https://0.0.0.0:7777", authRequired: false }), "auth");
  assert.match(auth.hint, /auth\.required: true/);
});

test("free disk space under 5 GiB warns and under 1 GiB fails", () => {
  assert.equal(diskSpaceCheck("/var/lib/cleanroom", 20 * GiB).status, "pass");
  assert.equal(diskSpaceCheck("/var/lib/cleanroom", 4.9 * GiB).status, "warn");
  assert.equal(diskSpaceCheck("/var/lib/cleanroom", 0.5 * GiB).status, "fail");
  assert.match(diskSpaceCheck("/var/lib/cleanroom", 0.5 * GiB).detail, /^0\.5 GiB free under \/var\/lib\/cleanroom/);
  assert.match(diskSpaceCheck("/var/lib/cleanroom", 0.5 * GiB).hint, /system prune/);
});

test("the linux backend is not usable without its agent binary, and says how to build it", async (t) => {
  const root = await mkdtemp(join(tmpdir(), "cleanroom-probe-"));
  t.after(() => rm(root, { recursive: true, force: true }));
  const backend = createLinuxBackend({ stateDir: join(root, "state"), runDir: join(root, "run"), agentPath: join(root, "missing-agent"), idRange: sandboxIdRange });
  const probe = await backend.probe();
  assert.equal(probe.backend, "linux");
  assert.equal(probe.usable, false);
  assert.match(check<ProbeCheck>(probe.checks, "agent").detail, /agent\/build\.sh/);
  assert.deepEqual(probe.capabilities, backend.capabilities());
});
