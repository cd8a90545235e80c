import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile, readdir, readlink } from "node:fs/promises";
import { join } from "node:path";
import { assertNothingLeft, firstBytesFromAgent, runcCli, testWorld, type TestWorld } from "./fixtures.ts";

const namespaces = ["pid", "user", "mnt", "net", "ipc", "uts", "cgroup"] as const;

async function nsIds(pid: number | "self"): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const ns of namespaces) out[ns] = await readlink(`/proc/${pid}/ns/${ns}`);
  return out;
}

/** The sandbox's cgroup dir in every hierarchy that has one, found by scanning cgroupfs (not via the backend). */
async function cgroupDirsOf(id: string): Promise<string[]> {
  const found: string[] = [];
  for (const h of await readdir("/sys/fs/cgroup").catch(() => [])) {
    const dir = join("/sys/fs/cgroup", h, "cleanroom", id);
    if (existsSync(dir)) found.push(dir);
  }
  const v2 = join("/sys/fs/cgroup", "cleanroom", id);
  if (existsSync(v2)) found.push(v2);
  return found;
}

function runcExec(w: TestWorld, id: string, script: string): string {
  return runcCli(w.runcRoot, ["exec", id, "/bin/sh", "-c", script]);
}

test("a launched sandbox runs the agent as PID 1 in its own namespaces, limits and overlay; destroy removes it all", async (t) => {
  const w = await testWorld(t);
  const spec = w.spec();
  const id = spec.sandboxId;
  const launched = await w.backend.launch(spec);

  assert.equal(await w.backend.state(id), "running");
  assert.equal(launched.agentSocketPath, join(w.stateDir, "sandboxes", id, "agent.sock"));
  assert.equal(w.backend.agentSocketPath(id), launched.agentSocketPath);
  assert.ok((await firstBytesFromAgent(launched.agentSocketPath)).length > 0, "the agent speaks first");
  // the daemon's copy of the listening socket is closed, the path stays: reconnecting works
  assert.ok((await firstBytesFromAgent(launched.agentSocketPath)).length > 0);

  const pid = launched.initPid;
  const host = await nsIds("self");
  const sandbox = await nsIds(pid);
  for (const ns of namespaces) assert.notEqual(sandbox[ns], host[ns], `${ns} namespace must be new`);
  assert.match(await readFile(`/proc/${pid}/uid_map`, "utf8"), /^\s*0\s+1200000000\s+65536\s*$/);
  assert.match(await readFile(`/proc/${pid}/gid_map`, "utf8"), /^\s*0\s+1200000000\s+65536\s*$/);
  assert.match(await readlink(`/proc/${pid}/exe`), /cleanroom-agent/);

  const status = await readFile(`/proc/${pid}/status`, "utf8");
  assert.match(status, /^Seccomp:\s+2$/m, "runc applied a seccomp filter");
  assert.match(status, /^NoNewPrivs:\s+1$/m);
  const capEff = BigInt("0x" + (/^CapEff:\s+([0-9a-f]+)$/m.exec(status)?.[1] ?? "0"));
  assert.equal(capEff & (1n << 21n), 0n, "no CAP_SYS_ADMIN");
  assert.equal(capEff & (1n << 13n), 0n, "no CAP_NET_RAW");
  assert.notEqual(capEff & (1n << 0n), 0n, "CAP_CHOWN kept");

  const rootfs = join(w.stateDir, "sandboxes", id, "rootfs");
  const mounts = await readFile("/proc/self/mountinfo", "utf8");
  assert.ok(mounts.split("\n").some((l) => l.split(" ")[4] === rootfs && l.includes(" - overlay ")), "overlay mounted on rootfs");

  // another host user cannot browse the sandbox's files through its state dir
  assert.throws(
    () => execFileSync("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "/bin/busybox", "cat", join(rootfs, "etc", "layer")], { stdio: "pipe" }),
    /Permission denied/,
  );

  const cgroups = await cgroupDirsOf(id);
  const memory = cgroups.find((d) => d.includes("/memory/")) ?? cgroups.find((d) => existsSync(join(d, "memory.max")));
  const pids = cgroups.find((d) => d.includes("/pids/")) ?? cgroups.find((d) => existsSync(join(d, "pids.max")));
  assert.ok(memory && pids, `memory and pids cgroups exist: ${cgroups.join(", ")}`);
  const memLimit = existsSync(join(memory, "memory.limit_in_bytes")) ? "memory.limit_in_bytes" : "memory.max";
  assert.equal((await readFile(join(memory, memLimit), "utf8")).trim(), String(256 * 1024 * 1024));
  assert.equal((await readFile(join(pids, "pids.max"), "utf8")).trim(), "128");
  assert.ok((await readFile(join(pids, "cgroup.procs"), "utf8")).split("\n").includes(String(pid)));

  // inside: the higher layer wins, root can write /, the agent binary and the mount syscalls are off limits
  const out = runcExec(
    w,
    id,
    "cat /etc/layer; id -u; echo x > /written && echo wrote; echo y > /.cleanroom/cleanroom-agent 2>/dev/null || echo agent-ro; " +
      "unshare -U true 2>/dev/null || echo unshare-denied; mount -t tmpfs t /tmp 2>/dev/null || echo mount-denied; " +
      "hostname",
  );
  assert.deepEqual(out.trim().split("\n"), [
    "top",
    "0",
    "wrote",
    "agent-ro",
    "unshare-denied",
    "mount-denied",
    id,
  ]);
  const env = (await readFile(`/proc/${pid}/environ`, "utf8")).split("\0");
  assert.ok(env.includes("IMAGE_VAR=1") && env.includes("CLEANROOM_AGENT_LISTEN_FD=3"), env.join(" "));
  // writes land in the private upper dir, owned by the shifted root; the layers are untouched
  const upperFile = join(w.stateDir, "sandboxes", id, "upper", "written");
  assert.equal(execFileSync("stat", ["-c", "%u", upperFile], { encoding: "utf8" }).trim(), "1200000000");
  assert.ok(!existsSync(join(w.lowerDirs[1]!, "written")));

  await w.backend.destroy(id);

  assert.equal(await w.backend.state(id), "missing");
  assert.doesNotMatch(runcCli(w.runcRoot, ["list", "-q"]), new RegExp(id));
  assert.ok(!(await readFile("/proc/self/mountinfo", "utf8")).includes(rootfs), "overlay unmounted");
  assert.deepEqual(await cgroupDirsOf(id), [], "cgroup dirs removed in every hierarchy");
  assert.ok(!existsSync(join(w.stateDir, "sandboxes", id)), "state dir removed");
  assert.equal(await processesInNamespace(sandbox.pid!), 0, "no process left in the sandbox's pid namespace");
  assert.deepEqual(await w.backend.listSandboxIds(), []);
  await w.backend.destroy(id); // idempotent
});

/** Live (non-zombie) processes whose pid namespace is `nsId`. */
async function processesInNamespace(nsId: string): Promise<number> {
  let n = 0;
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const ns = await readlink(`/proc/${entry}/ns/pid`).catch(() => "");
    if (ns !== nsId) continue;
    const stat = await readFile(`/proc/${entry}/stat`, "utf8").catch(() => "");
    if (stat && stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z") n++;
  }
  return n;
}

test("two sandboxes from the same layers are isolated from each other", async (t) => {
  const w = await testWorld(t);
  const a = await w.backend.launch(w.spec());
  const bSpec = w.spec();
  const b = await w.backend.launch(bSpec);
  assert.notEqual(await readlink(`/proc/${a.initPid}/ns/mnt`), await readlink(`/proc/${b.initPid}/ns/mnt`));
  const aId = a.agentSocketPath.split("/").at(-2)!;
  runcExec(w, aId, "echo only-a > /etc/layer");
  assert.equal(runcExec(w, bSpec.sandboxId, "cat /etc/layer").trim(), "top");
  assert.deepEqual(await w.backend.listSandboxIds(), [aId, bSpec.sandboxId].sort());
  await w.backend.destroy(aId);
  assert.equal(await w.backend.state(bSpec.sandboxId), "running");
  assert.ok((await firstBytesFromAgent(b.agentSocketPath)).length > 0);
  await w.backend.destroy(bSpec.sandboxId);
});

test("a sandbox killed from inside is reported stopped until destroyed", async (t) => {
  const w = await testWorld(t);
  const spec = w.spec();
  const { initPid } = await w.backend.launch(spec);
  process.kill(initPid, "SIGKILL");
  for (let i = 0; i < 500 && (await w.backend.state(spec.sandboxId)) === "running"; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(await w.backend.state(spec.sandboxId), "stopped");
  await w.backend.destroy(spec.sandboxId);
  await assertNothingLeft(w, spec.sandboxId);
});
