import { constants } from "node:fs";
import { chmod, mkdir, open, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describeFailure, tryCommand } from "../../host-command/index.ts";
import { pathExists } from "../linux/host-access.ts";
import { cgroupPids } from "../linux/cgroups.ts";
import type { OciRuntime } from "../linux/oci-runtime.ts";
import { spawnRuntime } from "../linux/runc.ts";
import { sandboxIdPattern } from "../linux/sandbox-layout.ts";
import { exitWaitMs, killSandboxCgroupProcesses, waitUntil } from "../linux/teardown.ts";
import { agentSocketName, gvisorSpec } from "./spec.ts";

const commandTimeoutMs = 30_000;

/** ptrace works everywhere; kvm only where /dev/kvm opens (systrap is newer than the runsc Debian ships). */
export type RunscPlatform = "ptrace" | "kvm";

/** The best platform this host gives runsc: kvm when /dev/kvm opens read-write, else ptrace. */
export async function bestRunscPlatform(device = "/dev/kvm"): Promise<RunscPlatform> {
  try {
    await (await open(device, constants.O_RDWR)).close();
    return "kvm";
  } catch {
    return "ptrace";
  }
}

/**
 * runsc (gVisor) with its own state root. Networking is `--network=host` with runsc started inside network/'s
 * netns: the gVisor kernel's sockets are host sockets of that netns, so the same nftables rules and DNS policy
 * server apply as under runc (the netstack mode, `--network=sandbox`, refuses to start on this kernel: runsc
 * 20221219 takes any netns with /proc/sys/net/core/rmem_default for the root one). A sandbox without a netns gets
 * `--network=none`, never the daemon's. The agent binds its own socket in a bind-mounted dir (`--host-uds=create`).
 * `--overlay2=none` keeps writes in the overlay upper dir, where snapshots and write scans read them.
 *
 * runsc reaches its sandbox over an abstract unix socket, which lives in the sandbox's netns: every later runsc
 * command runs there too, so the netns path is kept in the bundle dir (`bundleDirOf(id)/netns`), surviving a restart.
 */
export function runscRuntime(root: string, platform: RunscPlatform, bundleDirOf: (id: string) => string, binary = "runsc"): OciRuntime {
  const globalArgs = (network: "host" | "none") => [
    "--root", root, `--platform=${platform}`, `--network=${network}`, "--host-uds=create", "--oci-seccomp", "--overlay2=none",
  ];
  const netnsFile = (id: string) => join(bundleDirOf(id), "netns");
  /** argv that runs runsc inside the sandbox's netns, or directly when it has none (left) */
  const inNetns = async (netns: string | undefined, args: string[]): Promise<[string, string[]]> =>
    netns && (await pathExists(netns)) ? ["nsenter", [`--net=${netns}`, "--", binary, ...args]] : [binary, args];
  const command = async (id: string, args: string[]) => {
    const netns = (await readFile(netnsFile(id), "utf8").catch(() => "")).trim() || undefined;
    const [file, argv] = await inNetns(netns, [...globalArgs(netns ? "host" : "none"), ...args]);
    return tryCommand(file, argv, { timeoutMs: commandTimeoutMs });
  };
  const known = async (id: string) => (await readdir(root).catch(() => [] as string[])).some((f) => f.startsWith(`${id}_sandbox:`));

  const readState = async (id: string): Promise<{ status: string; pid: number } | undefined> => {
    if (!(await known(id))) return undefined;
    const r = await command(id, ["state", id]);
    if (r.code !== 0) return { status: "stopped", pid: 0 };
    try {
      const s = JSON.parse(r.stdout) as { status?: unknown; pid?: unknown };
      return { status: String(s.status ?? "stopped"), pid: typeof s.pid === "number" ? s.pid : 0 };
    } catch {
      return { status: "stopped", pid: 0 };
    }
  };

  const runscDelete = async (id: string) => {
    const args = ["delete", "--force", id];
    const r = await command(id, args);
    if (r.code !== 0 && !/does not exist|not found/i.test(r.stderr)) throw new Error(describeFailure(binary, args, r));
  };

  return {
    backend: "gvisor",
    binary,
    root,
    agentSocketPath: (layout) => join(layout.agentSocketDir, agentSocketName),
    adaptSpec: (spec, layout) => gvisorSpec(spec, layout.agentSocketDir),
    prepare: async (layout) => {
      // the gofer runs as host root: nobody else on the host needs into this sandbox's files (its own setuid
      // binaries land in the upper dir as host root's)
      await chmod(layout.dir, 0o700);
      await mkdir(layout.agentSocketDir, { mode: 0o700 });
      return { close: async () => {} };
    },
    run: async ({ id, layout, logFd, networkNamespacePath }, timeoutMs) => {
      if (networkNamespacePath) await writeFile(netnsFile(id), networkNamespacePath, { mode: 0o600 });
      const args = [...globalArgs(networkNamespacePath ? "host" : "none"), "run", "--detach", "--bundle", layout.dir, id];
      // hostinet uses the netns runsc runs in; nsenter (not `ip netns exec`, which remounts /sys and hides cgroups)
      const [file, argv] = await inNetns(networkNamespacePath, args);
      return spawnRuntime(file, argv, [logFd], timeoutMs);
    },
    initPid: async (id) => {
      const s = await readState(id);
      return s && s.pid > 0 ? s.pid : undefined;
    },
    state: async (id) => {
      const s = await readState(id);
      if (!s) return undefined;
      return s.status === "running" || s.status === "paused" ? "running" : "stopped";
    },
    // gVisor pauses its own kernel's tasks; the sentry stays a live host process holding the memory
    setFrozen: async (id, frozen) => {
      const args = [frozen ? "pause" : "resume", id];
      const r = await command(id, args);
      if (r.code === 0) return;
      const now = (await readState(id))?.status;
      if (now === (frozen ? "paused" : "running")) return;
      throw new Error(describeFailure(binary, args, r));
    },
    stop: async (id) => {
      if (await known(id)) await runscDelete(id);
      // whatever runsc left (a crashed `run`, a gofer): every process in the sandbox's cgroups, by pid
      const dirs = await killSandboxCgroupProcesses(id);
      if (!(await waitUntil(async () => (await cgroupPids(dirs)).length === 0, exitWaitMs))) {
        throw new Error(`processes of sandbox ${id} still alive ${exitWaitMs} ms after SIGKILL`);
      }
    },
    remove: async (id) => {
      if (!(await known(id))) return;
      await runscDelete(id);
      // a `runsc run` killed half-way leaves files runsc itself no longer recognises
      const files = (await readdir(root).catch(() => [] as string[])).filter((f) => f.startsWith(`${id}_sandbox:`));
      await Promise.all(files.map((f) => rm(join(root, f), { force: true })));
    },
    listIds: async () => {
      const ids = new Set<string>();
      for (const f of await readdir(root).catch(() => [] as string[])) {
        const id = /^([a-z0-9]{12})_sandbox:/.exec(f)?.[1];
        if (id && sandboxIdPattern.test(id)) ids.add(id);
      }
      return [...ids];
    },
  };
}

/** `runsc --version`'s first line, or why it would not run. */
export async function runscVersion(binary = "runsc"): Promise<{ version?: string; problem?: string }> {
  const r = await tryCommand(binary, ["--version"], { timeoutMs: 5_000 });
  if (r.code === 0) return { version: r.stdout.split("\n")[0]?.trim() ?? "" };
  return { problem: r.error?.startsWith("ENOENT") ? `${binary} not found in PATH` : r.stderr.trim() || r.error || `exit ${r.code}` };
}
