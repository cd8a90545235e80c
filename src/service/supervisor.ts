// `cleanroom daemon supervise` (hidden): the fallback for hosts without systemd. Runs `serve` as its child with
// the installed command line, logs its output to a rotating file, restarts it when it dies (backoff 1 s doubling
// to 30 s, reset once it stayed up 60 s) and stops it on SIGTERM (SIGKILL after a timeout), like Restart=on-failure.
import { spawn, type ChildProcess } from "node:child_process";
import { rmSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { pino, type Logger } from "pino";
import { CleanroomError } from "../errors/index.ts";
import { LineSplitter, RotatingLog } from "./rotating-log.ts";
import {
  claimPidFile, gone, isServeArgv, isSupervisorArgv, liveProcessIs, readInstallRecord, readPidFile, removeRunFiles,
  serviceFiles, writeFileAtomic, type InstallRecord, type ServiceFiles, type SupervisorStatus,
} from "./service-files.ts";

export const RESTART_BACKOFF = { initialMs: 1_000, maxMs: 30_000, resetAfterMs: 60_000 } as const;

/** How long the supervisor waits for `serve` to exit after SIGTERM before it SIGKILLs it (systemd's TimeoutStopSec). */
export const STOP_TIMEOUT_MS = 30_000;

/** The wait before the next restart: 1 s after a run of 60 s or more (or the first crash), else double the last. */
export function nextRestartDelayMs(previousDelayMs: number | undefined, uptimeMs: number): number {
  if (previousDelayMs === undefined || uptimeMs >= RESTART_BACKOFF.resetAfterMs) return RESTART_BACKOFF.initialMs;
  return Math.min(previousDelayMs * 2, RESTART_BACKOFF.maxMs);
}

const LISTENING = /cleanroom daemon listening on (\S+)/;

/** Runs until SIGTERM/SIGINT, or until `serve` exits cleanly on its own; returns the exit code. */
export async function runSupervisor(env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const files = serviceFiles(env);
  const install = readInstallRecord(files.installPath);
  if (!install) throw new CleanroomError("not_found", `${files.installPath} does not exist; run \`cleanroom daemon install\` first`);
  claimPidFile(files.supervisorPidPath, process.pid, isSupervisorArgv);
  const log = new RotatingLog(files.logPath);
  const logger = pino({ base: { service: "cleanroom-supervisor" } }, { write: (line: string) => log.append(line) });
  try {
    await stopStrayServe(files, logger);
    return await superviseServe(files, install, log, logger);
  } finally {
    removeRunFiles(files);
    log.close();
  }
}

/** A `serve` left running by a supervisor that was killed: two daemons must never share one state dir. */
async function stopStrayServe(files: ServiceFiles, logger: Logger): Promise<void> {
  const pid = readPidFile(files.servePidPath);
  if (pid === undefined || !liveProcessIs(pid, isServeArgv)) return;
  logger.warn({ pid }, "a daemon from an earlier supervisor is still running; killing it (it reconciles on the next start)");
  process.kill(pid, "SIGKILL");
  await gone(pid, isServeArgv, 10_000);
}

async function superviseServe(files: ServiceFiles, install: InstallRecord, log: RotatingLog, logger: Logger): Promise<number> {
  const [program, ...launcherArgs] = install.launcher as [string, ...string[]];
  const status: SupervisorStatus = {
    supervisorPid: process.pid, supervisorStartedAt: new Date().toISOString(), state: "starting",
    servePid: null, serveStartedAt: null, restarts: 0, listenUrl: null, lastExit: null,
  };
  const save = () => writeFileAtomic(files.statusPath, `${JSON.stringify(status, null, 2)}\n`);
  let stopping = false;
  let child: ChildProcess | undefined;
  let wake = () => {};
  const stop = () => {
    if (stopping) return;
    stopping = true;
    status.state = "stopping";
    save();
    logger.info("stopping");
    wake();
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const force = setTimeout(() => child?.kill("SIGKILL"), STOP_TIMEOUT_MS);
      child.once("exit", () => clearTimeout(force));
    }
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  process.on("SIGHUP", () => undefined);

  let delayMs: number | undefined;
  while (!stopping) {
    const startedAt = Date.now();
    child = spawn(program, [...launcherArgs, ...install.serveArgs], { cwd: "/", env: process.env, stdio: ["ignore", "pipe", "pipe"] });
    Object.assign(status, { state: "starting", servePid: child.pid ?? null, serveStartedAt: new Date(startedAt).toISOString(), listenUrl: null });
    if (child.pid !== undefined) writeFileAtomic(files.servePidPath, `${child.pid}\n`);
    save();
    logger.info({ pid: child.pid }, "started cleanroom serve");
    const exit = await runChild(child, log, logger, (url) => {
      Object.assign(status, { state: "running", listenUrl: url });
      save();
    });
    rmSync(files.servePidPath, { force: true });
    status.servePid = null;
    status.lastExit = { ...exit, at: new Date().toISOString() };
    if (stopping) break;
    if (exit.code === 0) {
      logger.info("cleanroom serve exited cleanly; the supervisor stops with it");
      break;
    }
    delayMs = nextRestartDelayMs(delayMs, Date.now() - startedAt);
    status.restarts++;
    status.state = "restarting";
    save();
    logger.warn({ exit_code: exit.code, signal: exit.signal, restart_in_ms: delayMs }, "cleanroom serve died; restarting it");
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, delayMs);
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
  logger.info("stopped");
  return 0;
}

/** Pipes the child's output into the log, reports where it listens, and resolves when it exits (or fails to start). */
function runChild(child: ChildProcess, log: RotatingLog, logger: Logger, onListening: (url: string) => void): Promise<{ code: number | null; signal: string | null }> {
  const stdout = new LineSplitter((line) => log.append(line));
  const stderr = new LineSplitter((line) => {
    const listening = LISTENING.exec(line.toString());
    if (listening) onListening(listening[1]!);
    log.append(line);
  });
  child.stdout!.on("data", (chunk: Buffer) => stdout.push(chunk));
  child.stderr!.on("data", (chunk: Buffer) => stderr.push(chunk));
  const closed = new Promise((resolve) => child.once("close", resolve));
  return new Promise((resolve) => {
    child.once("exit", (code, signal) => {
      // its last words may still be in the pipes; but sandboxes the daemon started may hold them open for good
      void Promise.race([closed, sleep(500)]).then(() => {
        stdout.flush();
        stderr.flush();
        // held open by someone else, they would keep the supervisor alive after its last child
        child.stdout!.destroy();
        child.stderr!.destroy();
        resolve({ code, signal });
      });
    });
    child.once("error", (err) => {
      logger.error({ err: err.message }, "could not start cleanroom serve");
      if (child.pid === undefined) resolve({ code: null, signal: null });
    });
  });
}
