import { readFile } from "node:fs/promises";
import type { BackendProbe, CapabilityMap, LinuxBackendOptions, ProbeCheck } from "../types.ts";
import { tryCommand } from "../../host-command/index.ts";
import { availableControllers, readCgroupLayout } from "./cgroups.ts";
import { agentBinaryProblem, untraversableAncestors } from "./host-access.ts";
import { sandboxesDir } from "./sandbox-layout.ts";

/** Host checks the linux backend depends on; it is usable when all pass. */
export async function probeLinux(opts: Pick<LinuxBackendOptions, "stateDir" | "agentPath" | "idRange">, capabilities: CapabilityMap): Promise<BackendProbe> {
  const checks = await Promise.all([
    checkRunc(),
    checkRuncSeccomp(),
    checkUserNamespaces(),
    checkOverlayfs(),
    checkCgroups(),
    checkAgent(opts.agentPath),
    checkStateDir(opts.stateDir, opts.idRange.hostBase),
  ]);
  return { backend: "linux", usable: checks.every((c) => c.ok), checks, capabilities };
}

async function checkRunc(): Promise<ProbeCheck> {
  const r = await tryCommand("runc", ["--version"], { timeoutMs: 5_000 });
  const version = r.stdout.split("\n")[0]?.trim() ?? "";
  if (r.code !== 0) return { name: "runc", ok: false, detail: `runc not usable: ${r.error ?? r.stderr.trim()} (apt-get install runc)` };
  const m = /runc version (\d+)\.(\d+)/.exec(version);
  const ok = m !== null && (Number(m[1]) > 1 || (Number(m[1]) === 1 && Number(m[2]) >= 1));
  return { name: "runc", ok, detail: ok ? version : `${version || "unknown version"}: need runc >= 1.1` };
}

async function checkRuncSeccomp(): Promise<ProbeCheck> {
  const r = await tryCommand("runc", ["features"], { timeoutMs: 5_000 });
  if (r.code === 0) {
    try {
      const f = JSON.parse(r.stdout) as { linux?: { seccomp?: { enabled?: boolean } }; annotations?: Record<string, string> };
      const enabled = f.linux?.seccomp?.enabled === true;
      const lib = f.annotations?.["io.github.seccomp.libseccomp.version"];
      return { name: "seccomp", ok: enabled, detail: enabled ? `runc built with libseccomp ${lib ?? "?"}` : "runc was built without seccomp" };
    } catch {
      // fall through to --version
    }
  }
  const v = await tryCommand("runc", ["--version"], { timeoutMs: 5_000 });
  const lib = /libseccomp: (\S+)/.exec(v.stdout)?.[1];
  return { name: "seccomp", ok: lib !== undefined, detail: lib ? `runc built with libseccomp ${lib}` : "runc reports no libseccomp" };
}

/** A real attempt: create a user namespace with root mapped, as runc will. */
async function checkUserNamespaces(): Promise<ProbeCheck> {
  const max = Number((await readFile("/proc/sys/user/max_user_namespaces", "utf8").catch(() => "")).trim());
  if (max === 0) return { name: "user_namespaces", ok: false, detail: "user.max_user_namespaces is 0: set it above 0" };
  const r = await tryCommand("unshare", ["--user", "--map-root-user", "true"], { timeoutMs: 5_000 });
  if (r.code === 0) return { name: "user_namespaces", ok: true, detail: `creatable (max ${Number.isFinite(max) ? max : "?"})` };
  if (r.error?.startsWith("ENOENT")) return { name: "user_namespaces", ok: max > 0, detail: `max_user_namespaces ${max} (unshare(1) missing, not tried)` };
  return { name: "user_namespaces", ok: false, detail: `cannot create a user namespace: ${r.stderr.trim() || r.error}` };
}

async function checkOverlayfs(): Promise<ProbeCheck> {
  const fs = await readFile("/proc/filesystems", "utf8").catch(() => "");
  const ok = /\toverlay$/m.test(fs);
  return { name: "overlayfs", ok, detail: ok ? "overlay in /proc/filesystems" : "overlay not in /proc/filesystems: modprobe overlay" };
}

async function checkCgroups(): Promise<ProbeCheck> {
  const layout = await readCgroupLayout();
  if (layout.mode === "none") return { name: "cgroups", ok: false, detail: "no cgroup hierarchy mounted" };
  const needed = ["memory", "pids", "cpu"];
  const present = await availableControllers(layout);
  const missing = needed.filter((c) => !present.includes(c));
  return {
    name: "cgroups",
    ok: missing.length === 0,
    detail: `${layout.mode}${missing.length ? `; missing controllers: ${missing.join(", ")}` : ""} (${layout.hierarchies.length} hierarchies)`,
  };
}

async function checkAgent(agentPath: string): Promise<ProbeCheck> {
  const problem = await agentBinaryProblem(agentPath);
  return { name: "agent", ok: !problem, detail: problem ?? agentPath };
}

async function checkStateDir(stateDir: string, hostRoot: number): Promise<ProbeCheck> {
  const closed = await untraversableAncestors(sandboxesDir(stateDir));
  // the backend makes stateDir itself traversable; the dirs above it are the host's
  const above = closed.filter((d) => d.length < stateDir.length);
  return {
    name: "state_dir",
    ok: above.length === 0,
    detail: above.length ? `the sandbox's root (host uid ${hostRoot}) cannot reach ${stateDir}: chmod o+x ${above.join(" ")}` : stateDir,
  };
}
