// Where the service's files live, and reading/writing them: the install record (state dir), the supervisor's
// pid and status files (run dir), and checks that a pid in a file is still the process that wrote it.
import { linkSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { z } from "zod";
import { hostPaths } from "../config/index.ts";
import { CleanroomError, messageOf } from "../errors/index.ts";
import { UNIT_NAME } from "./systemd-unit.ts";

export interface ServiceFiles {
  /** cleanroom.service: `$CLEANROOM_SYSTEMD_UNIT_DIR`, else /etc/systemd/system */
  unitPath: string;
  /** the fallback's durable files: install record and log */
  stateDir: string;
  installPath: string;
  logPath: string;
  /** the supervisor's runtime files: they die with the machine */
  runDir: string;
  supervisorPidPath: string;
  servePidPath: string;
  statusPath: string;
}

/** The service's files for the daemon whose paths `env` describes. */
export function serviceFiles(env: NodeJS.ProcessEnv = process.env): ServiceFiles {
  const paths = hostPaths(env);
  const stateDir = join(paths.stateDir, "service");
  const runDir = join(paths.runDir, "service");
  return {
    unitPath: join(env.CLEANROOM_SYSTEMD_UNIT_DIR || "/etc/systemd/system", UNIT_NAME),
    stateDir,
    installPath: join(stateDir, "install.json"),
    logPath: join(stateDir, "daemon.log"),
    runDir,
    supervisorPidPath: join(runDir, "supervisor.pid"),
    servePidPath: join(runDir, "serve.pid"),
    statusPath: join(runDir, "status.json"),
  };
}

const installRecordSchema = z.object({
  version: z.literal(1),
  launcher: z.array(z.string()).min(1),
  serveArgs: z.array(z.string()).min(1),
  environment: z.record(z.string(), z.string()),
  listen: z.string(),
  unitPath: z.string(),
  installedAt: z.string(),
});

/** What `daemon install` decided: the command line both the unit and the supervisor run. */
export type InstallRecord = z.infer<typeof installRecordSchema>;

/** The supervisor's account of itself and its `serve` child, rewritten on every change. */
export interface SupervisorStatus {
  supervisorPid: number;
  supervisorStartedAt: string;
  /** starting: serve runs but has not said where it listens; restarting: waiting out the backoff */
  state: "starting" | "running" | "restarting" | "stopping";
  servePid: number | null;
  serveStartedAt: string | null;
  restarts: number;
  listenUrl: string | null;
  lastExit: { code: number | null; signal: string | null; at: string } | null;
}

export function readInstallRecord(path: string): InstallRecord | undefined {
  const text = readOptional(path);
  if (text === undefined) return undefined;
  try {
    return installRecordSchema.parse(JSON.parse(text));
  } catch (err) {
    throw new CleanroomError("failed_precondition", `${path} is damaged (${messageOf(err)}); reinstall with \`cleanroom daemon install --force\``);
  }
}

export function readSupervisorStatus(path: string): SupervisorStatus | undefined {
  const text = readOptional(path);
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as SupervisorStatus;
  } catch {
    return undefined; // written by rename, so only a foreign file can be unreadable: treat it as none
  }
}

/** Writes a file whole or not at all (write beside it, then rename over). */
export function writeFileAtomic(path: string, text: string, mode = 0o644): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, text, { mode });
  renameSync(temporary, path);
}

export function readPidFile(path: string): number | undefined {
  const pid = Number(readOptional(path)?.trim());
  return Number.isInteger(pid) && pid > 1 ? pid : undefined;
}

/**
 * Writes `pid` to a pid file that must not name another live process `isOurs` accepts; a stale file is replaced.
 * Linking a finished temporary file into place keeps two racing starts from both winning.
 */
export function claimPidFile(path: string, pid: number, isOurs: (argv: string[]) => boolean): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  const temporary = `${path}.${pid}.tmp`;
  writeFileSync(temporary, `${pid}\n`);
  try {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        linkSync(temporary, path);
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      }
      const holder = readPidFile(path);
      if (holder !== undefined && holder !== pid && liveProcessIs(holder, isOurs)) {
        throw new CleanroomError("already_exists", `another supervisor (pid ${holder}) is running; see \`cleanroom daemon status\``);
      }
      rmSync(path, { force: true });
    }
    throw new CleanroomError("internal", `could not claim ${path}`);
  } finally {
    rmSync(temporary, { force: true });
  }
}

/** The argv of a live process; undefined when it is gone or a zombie (whose cmdline is empty). */
export function processArgv(pid: number): string[] | undefined {
  const cmdline = readOptional(`/proc/${pid}/cmdline`);
  if (!cmdline) return undefined;
  return cmdline.replace(/\0$/, "").split("\0");
}

/** True when `pid` is alive and its argv passes `isOurs` (a pid file can outlive its process and the pid be reused). */
export function liveProcessIs(pid: number, isOurs: (argv: string[]) => boolean): boolean {
  const argv = processArgv(pid);
  return argv !== undefined && isOurs(argv);
}

/** The fallback's supervisor: `node … cli/main.js daemon supervise`. */
export function isSupervisorArgv(argv: string[]): boolean {
  return argv.some((word, i) => word === "daemon" && argv[i + 1] === "supervise") && argv.some(isCliEntry);
}

/** A daemon started from this package's CLI: `node … cli/main.js serve …`. */
export function isServeArgv(argv: string[]): boolean {
  const entry = argv.findIndex(isCliEntry);
  return entry >= 0 && argv[entry + 1] === "serve";
}

function isCliEntry(word: string): boolean {
  return /\/cli\/main\.(js|ts)$/.test(word);
}

/** True once `pid` is no longer our process (gone, or reused by another), false if it still is after `timeoutMs`. */
export async function gone(pid: number, isOurs: (argv: string[]) => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (liveProcessIs(pid, isOurs)) {
    if (Date.now() > deadline) return false;
    await sleep(50);
  }
  return true;
}

/** A file's text, or undefined when it (or, under /proc, its process) does not exist. */
export function readOptional(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT" || (err as NodeJS.ErrnoException).code === "ESRCH") return undefined;
    throw err;
  }
}

/** Removes the fallback's run files (after the supervisor is gone). */
export function removeRunFiles(files: ServiceFiles): void {
  for (const path of [files.supervisorPidPath, files.servePidPath, files.statusPath]) rmSync(path, { force: true });
}
