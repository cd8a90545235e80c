import { rm } from "node:fs/promises";
import { join } from "node:path";
import { cgroupDirs, cgroupPids, readCgroupLayout, removeCgroupDirs } from "./cgroups.ts";
import { sandboxCgroupPath } from "./oci-spec.ts";
import { pathExists } from "./host-access.ts";
import { isMountPoint, unmount } from "./overlay.ts";
import { deleteContainer, isInitAlive, readContainerState, type Runc } from "./runc.ts";
import type { SandboxLayout } from "./sandbox-layout.ts";

const exitWaitMs = 10_000;

/**
 * Releases everything a sandbox holds on the host, in reverse order of launch, from what is on disk
 * (runc's state, /proc/self/mountinfo, cgroupfs): no memory of the launch is needed, so it works on a
 * half-created sandbox and after a daemon crash. Every step runs even if an earlier one failed; the
 * failures come back as messages.
 */
export async function teardownSandbox(runc: Runc, id: string, layout: SandboxLayout): Promise<string[]> {
  const problems: string[] = [];
  const step = async (what: string, fn: () => Promise<void>) => {
    try {
      await fn();
    } catch (err) {
      problems.push(`${what}: ${(err as Error).message}`);
    }
  };

  await step("stop container", () => stopContainer(runc, id));
  // a container that survives SIGKILL keeps its rootfs: tearing the overlay from under it helps nobody
  if (problems.length) return problems;
  // with the container dead, runc's side and the filesystem side are independent
  await Promise.all([
    (async () => {
      await step("runc delete", () => deleteRuncContainer(runc, id));
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

/** SIGKILL to the container's init (verified by start time) ends every process in its pid namespace. */
async function stopContainer(runc: Runc, id: string): Promise<void> {
  const state = await readContainerState(runc, id);
  if (!state || !(await isInitAlive(state))) return;
  try {
    process.kill(state.initPid, "SIGKILL");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
  }
  if (!(await waitUntil(async () => !(await isInitAlive(state)), exitWaitMs))) {
    throw new Error(`init pid ${state.initPid} still alive ${exitWaitMs} ms after SIGKILL`);
  }
}

async function deleteRuncContainer(runc: Runc, id: string): Promise<void> {
  const stateDir = join(runc.root, id);
  if (!(await pathExists(stateDir))) return;
  let deleteError: unknown;
  try {
    await deleteContainer(runc, id);
  } catch (err) {
    deleteError = err;
  }
  // a `runc run` killed half-way leaves a state dir runc itself no longer recognises
  if (await pathExists(stateDir)) {
    const state = await readContainerState(runc, id);
    if (state && (await isInitAlive(state))) throw deleteError ?? new Error(`container ${id} is still running`);
    await rm(stateDir, { recursive: true, force: true });
  }
}

/** Kills what is left in the sandbox's cgroups (e.g. a stray `runc init`), then removes them in every hierarchy. */
async function removeSandboxCgroups(id: string): Promise<void> {
  const dirs = cgroupDirs(await readCgroupLayout(), sandboxCgroupPath(id));
  const pids = await cgroupPids(dirs);
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  let failed = await removeCgroupDirs(dirs);
  // a killed task leaves the cgroup a moment after the signal; EBUSY until then
  if (failed.length) {
    await waitUntil(async () => (failed = await removeCgroupDirs(failed.map((f) => f.dir))).length === 0, exitWaitMs);
  }
  if (failed.length) throw new Error(failed.map((f) => `${f.dir}: ${f.error}`).join("; "));
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


