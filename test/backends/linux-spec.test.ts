import { test } from "node:test";
import assert from "node:assert/strict";
import { sandboxIdRange } from "../../src/config/index.ts";
import { renderSandboxSpec } from "../../src/backends/linux/oci-spec.ts";
import { defaultSeccompProfile } from "../../src/backends/linux/seccomp-profile.ts";
import { planOverlayMount } from "../../src/backends/linux/overlay.ts";
import { checkLaunchSpec } from "../../src/backends/linux/launch-spec.ts";
import type { LaunchSpec } from "../../src/backends/index.ts";

const input = {
  sandboxId: "abc123def456",
  rootfsPath: "/var/lib/cleanroom/sandboxes/abc123def456/rootfs",
  agentHostPath: "/opt/cleanroom/cleanroom-agent",
  imageEnv: ["PATH=/usr/bin:/bin", "LANG=C.UTF-8", "CLEANROOM_AGENT_LISTEN_FD=7", "CLEANROOM_AGENT_DEBUG=1"],
  hostname: "sb1",
  resources: { vcpus: 1.5, memoryMiB: 512, pidsLimit: 256 },
  idRange: sandboxIdRange,
  nofileLimit: 20000,
};

test("the spec runs the agent as root of a user namespace mapped onto the sandbox id range", () => {
  const spec = renderSandboxSpec(input);
  assert.deepEqual(spec.process.args, ["/.cleanroom/cleanroom-agent"]);
  assert.deepEqual(spec.process.user, { uid: 0, gid: 0 });
  assert.equal(spec.process.cwd, "/");
  assert.equal(spec.process.noNewPrivileges, true);
  assert.deepEqual(spec.linux.uidMappings, [{ containerID: 0, hostID: 1_200_000_000, size: 65_536 }]);
  assert.deepEqual(spec.linux.gidMappings, spec.linux.uidMappings);
  assert.deepEqual(
    spec.linux.namespaces.map((n) => n.type).sort(),
    ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
  );
  assert.equal(spec.root.path, input.rootfsPath);
  assert.equal(spec.hostname, "sb1");
});

test("an image cannot steer the agent through CLEANROOM_AGENT_* env; ours comes last", () => {
  const env = renderSandboxSpec(input).process.env;
  assert.deepEqual(env, ["PATH=/usr/bin:/bin", "LANG=C.UTF-8", "CLEANROOM_AGENT_LISTEN_FD=3"]);
  const noPath = renderSandboxSpec({ ...input, imageEnv: [] }).process.env;
  assert.match(noPath[0] ?? "", /^PATH=\/usr\/local\/sbin:/);
});

test("capabilities are Docker's default set, without the ones that reach the host", () => {
  const caps = renderSandboxSpec(input).process.capabilities;
  for (const set of [caps.bounding, caps.effective, caps.permitted]) {
    assert.ok(set.includes("CAP_CHOWN") && set.includes("CAP_NET_BIND_SERVICE") && set.includes("CAP_SETUID"));
    for (const banned of ["CAP_SYS_ADMIN", "CAP_SYS_MODULE", "CAP_SYS_PTRACE", "CAP_NET_RAW", "CAP_NET_ADMIN", "CAP_MKNOD"]) {
      assert.ok(!set.includes(banned), `${banned} must not be granted`);
    }
  }
  assert.deepEqual(caps.ambient, []);
  assert.deepEqual(caps.inheritable, []);
});

test("the agent is bind-mounted read-only, /sys is read-only, /proc paths are masked", () => {
  const spec = renderSandboxSpec(input);
  const agent = spec.mounts.find((m) => m.destination === "/.cleanroom/cleanroom-agent");
  assert.equal(agent?.source, input.agentHostPath);
  assert.ok(agent?.options.includes("ro") && agent.options.includes("nosuid") && agent.options.includes("nodev"));
  assert.ok(spec.mounts.find((m) => m.destination === "/sys")?.options.includes("ro"));
  const pts = spec.mounts.find((m) => m.destination === "/dev/pts");
  assert.ok(pts?.options.includes("newinstance") && pts.options.includes("ptmxmode=0666"));
  for (const p of ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware", "/proc/scsi"]) assert.ok(spec.linux.maskedPaths.includes(p));
  for (const p of ["/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus"]) assert.ok(spec.linux.readonlyPaths.includes(p));
});

test("resources become cgroup limits: memory and swap equal, cpu quota from vcpus, pids", () => {
  const r = renderSandboxSpec(input).linux.resources;
  assert.deepEqual(r.memory, { limit: 512 * 1024 * 1024, swap: 512 * 1024 * 1024 });
  assert.deepEqual(r.cpu, { quota: 150_000, period: 100_000 });
  assert.deepEqual(r.pids, { limit: 256 });
  assert.equal(renderSandboxSpec(input).linux.cgroupsPath, "/cleanroom/abc123def456");
});

test("seccomp allows by default and denies mounts, namespaces, modules, bpf, ptrace, keyrings, clocks", () => {
  const p = defaultSeccompProfile("x64");
  assert.equal(p.defaultAction, "SCMP_ACT_ALLOW");
  assert.deepEqual(p.architectures, ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]);
  const denied = new Set(p.syscalls.filter((s) => s.action === "SCMP_ACT_ERRNO" && !s.args).flatMap((s) => s.names));
  for (const name of [
    "mount", "umount2", "pivot_root", "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "bpf",
    "perf_event_open", "keyctl", "add_key", "request_key", "unshare", "setns", "open_by_handle_at", "name_to_handle_at", "reboot",
    "swapon", "swapoff", "acct", "syslog", "userfaultfd", "iopl", "ioperm", "quotactl", "lookup_dcookie", "settimeofday",
    "clock_settime", "clock_adjtime", "adjtimex", "ptrace", "process_vm_readv", "process_vm_writev",
  ]) {
    assert.ok(denied.has(name), `${name} must be denied`);
  }
  for (const harmless of ["read", "write", "execve", "clone", "socket", "chroot"]) assert.ok(!denied.has(harmless), `${harmless} must stay allowed`);
  const cloneUserns = p.syscalls.find((s) => s.names.includes("clone") && s.args?.[0]?.value === 0x10000000);
  assert.equal(cloneUserns?.args?.[0]?.op, "SCMP_CMP_MASKED_EQ");
  assert.equal(p.syscalls.find((s) => s.names.includes("clone3"))?.errnoRet, 38);
});

test("overlay lowerdir lists the highest layer first", () => {
  const plan = planOverlayMount(["/l/a", "/l/b", "/l/c"], "/s/upper", "/s/work");
  assert.equal(plan.options, "lowerdir=/l/c:/l/b:/l/a,upperdir=/s/upper,workdir=/s/work");
  assert.equal(plan.cwd, undefined);
});

test("overlay options past one page fall back to lower dirs relative to their parent, then fail clearly", () => {
  const store = "/var/lib/cleanroom/images/layers/sha256";
  const layers = Array.from({ length: 50 }, (_, i) => `${store}/${i.toString(16).padStart(64, "0")}`);
  const plan = planOverlayMount(layers, "/s/upper", "/s/work");
  assert.equal(plan.cwd, store);
  assert.ok(plan.options.startsWith(`lowerdir=${(49).toString(16).padStart(64, "0")}:`));
  assert.ok(Buffer.byteLength(plan.options) <= 4095);
  const tooMany = Array.from({ length: 80 }, (_, i) => `${store}/${i.toString(16).padStart(64, "0")}`);
  assert.throws(() => planOverlayMount(tooMany, "/s/upper", "/s/work"), /80 layers do not fit into one overlay mount/);
});

test("overlay paths with separators are refused, not escaped", () => {
  assert.throws(() => planOverlayMount(["/l/a:b"], "/u", "/w"), /contains one of/);
  assert.throws(() => planOverlayMount(["/l/a,upperdir=/etc"], "/u", "/w"), /contains one of/);
});

const spec: LaunchSpec = {
  sandboxId: "abc123def456",
  lowerDirs: ["/l/a/"],
  imageConfig: { env: ["A=1"], workingDir: "/", user: "" },
  resources: { vcpus: 0, memoryMiB: 0, pidsLimit: 64 },
};

test("a launch spec takes backend defaults for resources left at 0 and rejects bad input", () => {
  const checked = checkLaunchSpec(spec, { memoryMiB: 1024 });
  assert.deepEqual(checked.resources, { vcpus: 2, memoryMiB: 1024, pidsLimit: 64 });
  assert.deepEqual(checked.lowerDirs, ["/l/a"]);
  assert.equal(checked.hostname, "abc123def456");
  assert.throws(() => checkLaunchSpec({ ...spec, sandboxId: "ABC" }), /not 12 characters/);
  assert.throws(() => checkLaunchSpec({ ...spec, sandboxId: "../../etc/xx" }), /not 12 characters/);
  assert.throws(() => checkLaunchSpec({ ...spec, lowerDirs: [] }), /no image layers/);
  assert.throws(() => checkLaunchSpec({ ...spec, lowerDirs: ["rel/dir"] }), /not an absolute path/);
  assert.throws(() => checkLaunchSpec({ ...spec, hostname: "a b" }), /host name/);
  assert.throws(() => checkLaunchSpec({ ...spec, imageConfig: { ...spec.imageConfig, env: ["NOEQUALS"] } }), /KEY=VALUE/);
  assert.throws(() => checkLaunchSpec({ ...spec, imageConfig: { ...spec.imageConfig, env: ["A=" + "x".repeat(200_000)] } }), /longer than/);
  assert.throws(() => checkLaunchSpec({ ...spec, resources: { vcpus: 1, memoryMiB: 1.5, pidsLimit: 64 } }), /memoryMiB/);
});
