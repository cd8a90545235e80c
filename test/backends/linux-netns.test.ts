import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { readFile, readlink } from "node:fs/promises";
import { renderSandboxSpec } from "../../src/backends/linux/oci-spec.ts";
import { checkLaunchSpec } from "../../src/backends/linux/launch-spec.ts";
import { sandboxIdRange } from "../../src/config/index.ts";
import { newSandboxId, testWorld } from "./fixtures.ts";

function ip(args: string[]): void {
  execFileSync("ip", args, { stdio: "pipe", timeout: 10_000 });
}

/** A netns the test makes (as network/ would): a veth peer inside as eth0 with 10.254.77.2/30. Removed in t.after. */
function testNetns(t: { after(fn: () => unknown): void }): { name: string; path: string } {
  const name = `crbt-${newSandboxId()}`;
  const hostIf = `crbt${newSandboxId().slice(0, 8)}`;
  t.after(() => {
    for (const args of [["link", "del", hostIf], ["netns", "del", name]]) {
      try {
        ip(args);
      } catch {
        // already gone
      }
    }
  });
  ip(["netns", "add", name]);
  ip(["link", "add", hostIf, "type", "veth", "peer", "name", "eth0", "netns", name]);
  ip(["-n", name, "addr", "add", "10.254.77.2/30", "dev", "eth0"]);
  ip(["-n", name, "link", "set", "eth0", "up"]);
  return { name, path: `/run/netns/${name}` };
}

test("with a network namespace path the spec joins it and binds the host's /sys read-only with its network and cgroup views masked", () => {
  const base = {
    sandboxId: "abc123def456",
    rootfsPath: "/r",
    agentHostPath: "/a",
    imageEnv: [],
    hostname: "h",
    resources: { vcpus: 1, memoryMiB: 256, pidsLimit: 64 },
    idRange: sandboxIdRange,
    nofileLimit: 1024,
  };
  const joined = renderSandboxSpec({ ...base, networkNamespacePath: "/run/netns/cr-abc123def456" });
  assert.deepEqual(joined.linux.namespaces.find((n) => n.type === "network"), { type: "network", path: "/run/netns/cr-abc123def456" });
  assert.deepEqual(joined.mounts.find((m) => m.destination === "/sys"), { destination: "/sys", type: "bind", source: "/sys", options: ["rbind", "ro", "nosuid", "noexec", "nodev"] });
  for (const p of ["/sys/class/net", "/sys/devices/virtual/net", "/sys/fs/cgroup", "/sys/kernel/security", "/sys/firmware"]) assert.ok(joined.linux.maskedPaths.includes(p), p);
  const fresh = renderSandboxSpec(base);
  assert.deepEqual(fresh.linux.namespaces.find((n) => n.type === "network"), { type: "network" });
  assert.equal(fresh.mounts.find((m) => m.destination === "/sys")?.type, "sysfs");
  assert.ok(!fresh.linux.maskedPaths.includes("/sys/class/net"));
  const spec = { sandboxId: "abc123def456", lowerDirs: ["/l"], imageConfig: { env: [], workingDir: "/", user: "" }, resources: { vcpus: 1, memoryMiB: 256, pidsLimit: 64 } };
  for (const bad of ["run/netns/x", "/run/netns/../x", "/run//netns/x"]) assert.throws(() => checkLaunchSpec({ ...spec, networkNamespacePath: bad }), /network namespace path/);
});

test("a sandbox launched into a given netns uses its veth, cannot reconfigure it, and sees /sys read-only without the host's interfaces", async (t) => {
  const w = await testWorld(t);
  const ns = testNetns(t);
  const spec = w.spec({ networkNamespacePath: ns.path });
  const { initPid } = await w.backend.launch(spec);
  t.after(() => w.backend.destroy(spec.sandboxId));
  assert.equal(await readlink(`/proc/${initPid}/ns/net`), `net:[${statSync(ns.path).ino}]`, "the sandbox is in the given netns");
  assert.notEqual(await readlink(`/proc/${initPid}/ns/user`), await readlink("/proc/self/ns/user"), "still in its own user namespace");

  // nsenter, not `runc exec`: runc 1.1 joins the user namespace first and then may not enter a netns the host's
  // user namespace owns (opencontainers/runc#4390); nsenter enters it first. The daemon execs through the agent anyway.
  // Entering the user namespace gives full capabilities in it: still not enough to touch the host-owned netns.
  const out = execFileSync("nsenter", [
    "-t",
    String(initPid),
    "-U",
    "-m",
    "-u",
    "-i",
    "-n",
    "-p",
    "-r",
    "-w",
    "/bin/sh",
    "-c",
    "ip -4 addr show eth0 | grep -o 'inet [0-9./]*'; " +
      "ip addr add 10.9.9.9/32 dev eth0 2>/dev/null || echo addr-denied; " +
      "ip link set eth0 down 2>/dev/null || echo link-denied; " +
      "echo 0 > /proc/sys/net/ipv4/conf/eth0/rp_filter 2>/dev/null || echo sysctl-denied; " +
      "grep -q ' /sys ro,' /proc/self/mountinfo && echo sys-ro; " +
      "ls /sys/class/net | grep -c . ; ls /sys/fs/cgroup | grep -c . ; " +
      "test -e /sys/devices/system/cpu/online && echo cpu-visible",
  ], { encoding: "utf8", timeout: 10_000 });
  assert.deepEqual(out.trim().split("\n"), ["inet 10.254.77.2/30", "addr-denied", "link-denied", "sysctl-denied", "sys-ro", "0", "0", "cpu-visible"]);
  await w.backend.destroy(spec.sandboxId);
  assert.ok(existsSync(ns.path), "the netns is network/'s to remove, not the backend's");
  assert.match(await readFile("/proc/self/mountinfo", "utf8"), new RegExp(ns.name), "still mounted");
});
