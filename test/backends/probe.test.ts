import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sandboxIdRange } from "../../src/config/index.ts";
import { createLinuxBackend, probeHost, type ProbeCheck } from "../../src/backends/index.ts";
import { testAgentPath } from "./fixtures.ts";

function check(checks: ProbeCheck[], name: string): ProbeCheck {
  const c = checks.find((x) => x.name === name);
  assert.ok(c, `check ${name} reported`);
  return c;
}

test("probeHost reports this machine's runtimes, kernel features and which backends are usable", async (t) => {
  const root = await mkdtemp(join(tmpdir(), "cleanroom-probe-"));
  t.after(() => rm(root, { recursive: true, force: true }));
  const opts = { stateDir: join(root, "state"), runDir: join(root, "run"), agentPath: testAgentPath(), idRange: sandboxIdRange };
  // mkdtemp made root 0700: the sandbox's root could not walk to the state dir, and doctor says so
  const closed = await probeHost(opts);
  assert.match(check(closed.checks, "state_dir").detail, new RegExp(`chmod o\\+x ${root}$`));
  assert.equal(closed.backends[0]?.usable, false);
  await chmod(root, 0o711);
  const { checks, backends } = await probeHost(opts);
  assert.equal(check(checks, "state_dir").ok, true);

  const runc = check(checks, "runc");
  assert.equal(runc.ok, true);
  assert.match(runc.detail, /runc version 1\.\d+/);
  assert.equal(check(checks, "seccomp").ok, true);
  assert.match(check(checks, "seccomp").detail, /libseccomp/);
  assert.equal(check(checks, "user_namespaces").ok, true);
  assert.equal(check(checks, "overlayfs").ok, true);
  const cgroups = check(checks, "cgroups");
  assert.equal(cgroups.ok, true);
  const mode = existsSync("/sys/fs/cgroup/cgroup.controllers") ? "v2" : existsSync("/sys/fs/cgroup/unified") ? "hybrid" : "v1";
  assert.match(cgroups.detail, new RegExp(`^${mode}`));
  assert.equal(check(checks, "agent").ok, true);
  assert.equal(check(checks, "nft").ok, existsSync("/usr/sbin/nft"));
  // KVM counts only when a guest could really start; no /dev/kvm means not usable
  if (!existsSync("/dev/kvm")) assert.equal(check(checks, "kvm").ok, false);
  check(checks, "runsc");
  check(checks, "qemu");

  assert.deepEqual(backends.map((b) => b.backend), ["linux", "gvisor", "qemu"]);
  const linux = backends[0]!;
  assert.equal(linux.usable, true, JSON.stringify(linux.checks.filter((c) => !c.ok)));
  assert.equal(linux.capabilities["network.default_deny"], true);
  assert.equal(linux.capabilities["network.allowlist_egress"], false);
  assert.equal(linux.capabilities["sandbox.user_namespace"], true);
  for (const b of backends.slice(1)) {
    assert.equal(b.usable, false);
    assert.ok(b.checks.some((c) => !c.ok && c.detail.length > 0), `${b.backend} says why it is not usable`);
  }
});

test("the linux backend is not usable without its agent binary, and says how to build it", async (t) => {
  const root = await mkdtemp(join(tmpdir(), "cleanroom-probe-"));
  t.after(() => rm(root, { recursive: true, force: true }));
  const backend = createLinuxBackend({ stateDir: join(root, "state"), runDir: join(root, "run"), agentPath: join(root, "missing-agent"), idRange: sandboxIdRange });
  const probe = await backend.probe();
  assert.equal(probe.backend, "linux");
  assert.equal(probe.usable, false);
  assert.match(check(probe.checks, "agent").detail, /agent\/build\.sh/);
  assert.deepEqual(probe.capabilities, backend.capabilities());
});
