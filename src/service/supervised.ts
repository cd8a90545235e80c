// Starting, stopping and reading the supervisor of the fallback (hosts without systemd). Processes are found by
// their pid files and signalled only after /proc/PID/cmdline shows they are still the supervisor or its daemon.
import { spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { CleanroomError } from "../errors/index.ts";
import { lastLogLines } from "./rotating-log.ts";
import { SERVICE_PATH } from "./service-spec.ts";
import { STOP_TIMEOUT_MS } from "./supervisor.ts";
import {
  gone, isServeArgv, isSupervisorArgv, liveProcessIs, readPidFile, readSupervisorStatus, removeRunFiles,
  type InstallRecord, type ServiceFiles, type SupervisorStatus,
} from "./service-files.ts";

/** The supervisor's pid when it runs, else undefined (no pid file, a dead process, or a reused pid). */
export function runningSupervisor(files: ServiceFiles): number | undefined {
  const pid = readPidFile(files.supervisorPidPath);
  return pid !== undefined && liveProcessIs(pid, isSupervisorArgv) ? pid : undefined;
}

/** The supervisor's status file, when the supervisor that wrote it still runs. */
export function supervisorStatus(files: ServiceFiles): SupervisorStatus | undefined {
  const pid = runningSupervisor(files);
  if (pid === undefined) return undefined;
  const status = readSupervisorStatus(files.statusPath);
  return status?.supervisorPid === pid ? status : undefined;
}

/**
 * Starts the supervisor detached (its own session, so the terminal's signals do not reach it) with the service's
 * environment, and waits until `serve` says where it listens. A daemon that dies before that stops the supervisor
 * and fails the start with the log's last lines.
 */
export async function startSupervisor(files: ServiceFiles, install: InstallRecord, readyTimeoutMs = 60_000): Promise<SupervisorStatus> {
  const running = supervisorStatus(files);
  if (running) return running;
  removeRunFiles(files);
  const [program, ...launcherArgs] = install.launcher as [string, ...string[]];
  // the supervisor's own stderr only speaks if it crashes; it logs everything else through the rotating log
  const stderr = openSync(files.logPath, "a", 0o640);
  const child = spawn(program, [...launcherArgs, "daemon", "supervise"], {
    cwd: "/",
    detached: true,
    stdio: ["ignore", "ignore", stderr],
    env: { PATH: SERVICE_PATH, ...install.environment },
  });
  closeSync(stderr);
  let exited: string | undefined;
  child.once("exit", (code, signal) => (exited = signal ?? `exit code ${code}`));
  child.once("error", (err) => (exited = err.message));
  child.unref();
  const deadline = Date.now() + readyTimeoutMs;
  for (;;) {
    const status = readSupervisorStatus(files.statusPath);
    if (status && status.supervisorPid === child.pid && status.state === "running") return status;
    if (exited !== undefined) throw startFailure(files, `the supervisor ended (${exited})`);
    if (status && status.supervisorPid === child.pid && status.restarts > 0) {
      await stopSupervisor(files);
      throw startFailure(files, "the daemon exited while starting");
    }
    if (Date.now() > deadline) {
      throw new CleanroomError("runtime_launch_failed", `the daemon did not report where it listens within ${readyTimeoutMs / 1000} s; it is still starting (\`cleanroom daemon status\`, \`cleanroom daemon logs\`)`);
    }
    await sleep(50);
  }
}

function startFailure(files: ServiceFiles, what: string): CleanroomError {
  const tail = lastLogLines(files.logPath, 15).map((line) => `  ${line}`).join("\n");
  return new CleanroomError("runtime_launch_failed", `${what}; the log (${files.logPath}) ends:\n${tail}`);
}

/**
 * SIGTERM to the supervisor, which stops its daemon; SIGKILL to both if that takes longer than the supervisor's
 * own stop timeout and a margin. Returns the pids it stopped (none when nothing ran).
 */
export async function stopSupervisor(files: ServiceFiles): Promise<{ supervisorPid?: number; servePid?: number }> {
  const supervisorPid = runningSupervisor(files);
  const servePidFile = readPidFile(files.servePidPath);
  const servePid = servePidFile !== undefined && liveProcessIs(servePidFile, isServeArgv) ? servePidFile : undefined;
  if (supervisorPid !== undefined) {
    signal(supervisorPid, "SIGTERM");
    if (!(await gone(supervisorPid, isSupervisorArgv, STOP_TIMEOUT_MS + 10_000))) signal(supervisorPid, "SIGKILL");
  }
  // a daemon whose supervisor was killed (or did not finish) is stopped here, under the same timeout
  if (servePid !== undefined && liveProcessIs(servePid, isServeArgv)) {
    signal(servePid, "SIGTERM");
    if (!(await gone(servePid, isServeArgv, STOP_TIMEOUT_MS))) signal(servePid, "SIGKILL");
    await gone(servePid, isServeArgv, 5_000);
  }
  if (supervisorPid !== undefined) await gone(supervisorPid, isSupervisorArgv, 5_000);
  removeRunFiles(files);
  return { ...(supervisorPid !== undefined ? { supervisorPid } : {}), ...(servePid !== undefined ? { servePid } : {}) };
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
  }
}

