import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { readCgroupLayout, setCgroupFrozen, type CgroupLayout } from "./cgroups.ts";
import { listenAgentSocket } from "./agent-socket.ts";
import { pathExists } from "./host-access.ts";
import type { OciRuntime } from "./oci-runtime.ts";
import { sandboxCgroupPath } from "./oci-spec.ts";
import { deleteContainer, isInitAlive, readContainerState, runDetached, setFrozen, type Runc } from "./runc.ts";
import { sandboxIdPattern } from "./sandbox-layout.ts";
import { exitWaitMs, waitUntil } from "./teardown.ts";

const freezeTimeoutMs = 10_000;

/** runc: the agent accepts on a listening socket the daemon made and runc hands it as fd 3. */
export function runcRuntime(root: string): OciRuntime {
  const runc: Runc = { root, binary: "runc" };
  let cgroupLayout: Promise<CgroupLayout> | undefined;
  return {
    backend: "linux",
    binary: runc.binary,
    root,
    agentSocketPath: (layout) => layout.agentSocket,
    adaptSpec: (spec) => spec,
    prepare: async (layout) => listenAgentSocket(layout.agentSocket),
    run: ({ id, layout, logFd, prepared }, timeoutMs) => {
      if (prepared.fd === undefined) throw new Error("no agent socket to hand to runc");
      return runDetached(runc, id, layout.dir, logFd, prepared.fd, timeoutMs);
    },
    initPid: async (id) => (await readContainerState(runc, id))?.initPid,
    state: async (id) => {
      const state = await readContainerState(runc, id);
      if (!state) return undefined;
      return (await isInitAlive(state)) ? "running" : "stopped";
    },
    // the freezer directly where the host has one (what `runc pause` does, minus a process); else runc itself
    setFrozen: async (id, frozen) => {
      cgroupLayout ??= readCgroupLayout();
      if (await setCgroupFrozen(await cgroupLayout, sandboxCgroupPath(id), frozen, freezeTimeoutMs)) return;
      await setFrozen(runc, id, frozen);
    },
    stop: (id) => stopContainer(runc, id),
    remove: (id) => deleteRuncContainer(runc, id),
    listIds: async () => (await readdir(root).catch(() => [])).filter((id) => sandboxIdPattern.test(id)),
  };
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
