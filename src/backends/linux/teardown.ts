import { rm } from "node:fs/promises";
import { cgroupDirs, cgroupPids, readCgroupLayout, removeCgroupDirs } from "./cgroups.ts";
import { sandboxCgroupPath } from "./oci-spec.ts";
import { isMountPoint, unmount } from "./overlay.ts";
import type { OciRuntime } from "./oci-runtime.ts";
import type { SandboxLayout } from "./sandbox-layout.ts";

export const exitWaitMs = 10_000;

/**
 * Releases everything a sandbox holds on the host, in reverse order of launch, from what is on disk
 * (the runtime's state, /proc/self/mountinfo, cgroupfs): no memory of the launch is needed, so it works on a
 * half-created sandbox and after a daemon crash. Every step runs even if an earlier one failed; the
 * failures come back as messages.
 */
export async function teardownSandbox(runtime: OciRuntime, id: string, layout: SandboxLayout): Promise<string[]> {
  const problems: string[] = [];
  const step = async (what: string, fn: () => Promise<void>) => {
    try {
      await fn();
    } catch (err) {
      problems.push(`${what}: ${(err as Error).message}`);
    }
  };

  await step("stop container", () => runtime.stop(id));
  // a container that survives SIGKILL keeps its rootfs: tearing the overlay from under it helps nobody
  if (problems.length) return problems;
  // with the container dead, the runtime's side and the filesystem side are independent
  await Promise.all([
    (async () => {
      await step(`${runtime.binary} delete`, () => runtime.remove(id));
      await step("remove cgroups", () => removeSandboxCgroups(id));
    })(),
    (async () => {
      let mounted = false;
      await step("unmount rootfs", async () => {
        if (await isMountPoint(layout.rootfs)) await unmount(layout.rootfs);
        mounted = await isMountPoint(layout.rootfs);
      });
      // never recurse into a still-mounted rootfs: that would delete through the overlay
      if (!mounted) await step("remove state dir", () => rm(layout.dir, { recursive: true, force: true, maxRetries: 2 }));
    })(),
  ]);
  return problems;
}

/** Kills what is left in the sandbox's cgroups (e.g. a stray `runc init`), then removes them in every hierarchy. */
export async function removeSandboxCgroups(id: string): Promise<void> {
  const dirs = await killSandboxCgroupProcesses(id);
  let failed = await removeCgroupDirs(dirs);
  // a killed task leaves the cgroup a moment after the signal; EBUSY until then
  if (failed.length) {
    await waitUntil(async () => (failed = await removeCgroupDirs(failed.map((f) => f.dir))).length === 0, exitWaitMs);
  }
  if (failed.length) throw new Error(failed.map((f) => `${f.dir}: ${f.error}`).join("; "));
}

/** SIGKILLs every process in the sandbox's cgroups (by pid, from cgroup.procs); returns those cgroup dirs. */
export async function killSandboxCgroupProcesses(id: string): Promise<string[]> {
  const dirs = cgroupDirs(await readCgroupLayout(), sandboxCgroupPath(id));
  for (const pid of await cgroupPids(dirs)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  return dirs;
}

/** Polls `cond` with a short, growing interval (1 ms up to 20 ms). */
export async function waitUntil(cond: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  for (let delay = 1; ; delay = Math.min(delay * 2, 20)) {
    if (await cond()) return true;
    if (performance.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, delay));
  }
}


