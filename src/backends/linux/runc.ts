import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describeFailure, tryCommand, type CommandResult } from "../../host-command/index.ts";
import type { RuntimeRunResult } from "./oci-runtime.ts";

/** runc invoked with Cleanroom's own state root, so `runc list` elsewhere never sees our sandboxes. */
export interface Runc {
  root: string;
  binary: string;
}

export interface RuncContainerState {
  initPid: number;
  /** /proc/<pid>/stat start time (clock ticks since boot) runc recorded: guards against pid reuse */
  initStartTime: string;
}

/** Reads runc's own state file (no fork); undefined when runc has no such container. */
export async function readContainerState(runc: Runc, id: string): Promise<RuncContainerState | undefined> {
  let text: string;
  try {
    text = await readFile(join(runc.root, id, "state.json"), "utf8");
  } catch {
    return undefined;
  }
  try {
    const state = JSON.parse(text) as { init_process_pid?: unknown; init_process_start?: unknown };
    const pid = state.init_process_pid;
    if (typeof pid !== "number" || !Number.isInteger(pid) || pid <= 0) return undefined;
    return { initPid: pid, initStartTime: String(state.init_process_start ?? "") };
  } catch {
    return undefined;
  }
}

export interface ProcessStat {
  /** R, S, D, Z, X, … */
  state: string;
  startTime: string;
}

/** /proc/<pid>/stat state and start time; undefined when the pid does not exist. */
export async function readProcessStat(pid: number): Promise<ProcessStat | undefined> {
  let text: string;
  try {
    text = await readFile(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // comm (field 2) is chosen by the process and may hold spaces or parens: parse after the last ")"
  const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
  const state = rest[0];
  const startTime = rest[19];
  if (state === undefined || startTime === undefined) return undefined;
  return { state, startTime };
}

/** True when the container's init still runs (not exited, not a zombie, not a reused pid). */
export async function isInitAlive(state: RuncContainerState): Promise<boolean> {
  const stat = await readProcessStat(state.initPid);
  return stat !== undefined && stat.state !== "Z" && stat.state !== "X" && stat.startTime === state.initStartTime;
}

/**
 * `runc run --detach` with the agent's listening socket as fd 3. runc and the container's stdio go to
 * `logFd`; runc's errors end up there too, so the caller reads that file on failure.
 */
export function runDetached(runc: Runc, id: string, bundleDir: string, logFd: number, socketFd: number, timeoutMs: number): Promise<RuntimeRunResult> {
  const args = ["--root", runc.root, "run", "--detach", "--preserve-fds", "1", "--bundle", bundleDir, id];
  return spawnRuntime(runc.binary, args, [logFd, socketFd], timeoutMs);
}

/**
 * Runs an OCI runtime command to completion with stdout and stderr on `fds[0]` and any further fds from 3 on,
 * killed after `timeoutMs`. The runtime gets no daemon secrets: a bare env (the container's comes from config.json).
 */
export function spawnRuntime(binary: string, args: string[], fds: [logFd: number, ...extra: number[]], timeoutMs: number): Promise<RuntimeRunResult> {
  const start = performance.now();
  const [logFd, ...extra] = fds;
  return new Promise((resolve) => {
    const env = { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin" };
    const child = spawn(binary, args, { stdio: ["ignore", logFd, logFd, ...extra], env });
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    const done = (r: Omit<RuntimeRunResult, "durationMs">) => {
      clearTimeout(timer);
      resolve({ ...r, durationMs: performance.now() - start });
    };
    child.once("error", (err) => done({ code: null, error: err.message }));
    child.once("exit", (code, signal) => done(signal ? { code, error: `${binary} killed by ${signal}` } : { code }));
  });
}

/** `runc delete --force`; "does not exist" counts as success (idempotent destroy). */
export async function deleteContainer(runc: Runc, id: string): Promise<void> {
  const args = ["--root", runc.root, "delete", "--force", id];
  const r = await tryCommand(runc.binary, args, { timeoutMs: 30_000 });
  if (r.code === 0 || /does not exist/.test(r.stderr)) return;
  throw new Error(describeFailure("runc", args, r));
}

export function runcVersion(binary: string): Promise<CommandResult> {
  return tryCommand(binary, ["--version"], { timeoutMs: 5_000 });
}

/** `runc pause|resume`: freezes or thaws every process of the container (cgroup freezer, v1 or v2). */
export async function setFrozen(runc: Runc, id: string, frozen: boolean): Promise<void> {
  const args = ["--root", runc.root, frozen ? "pause" : "resume", id];
  const r = await tryCommand(runc.binary, args, { timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(describeFailure("runc", args, r));
}
