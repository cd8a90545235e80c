// The daemon as a host service: a systemd unit where systemd runs, else the same command under Cleanroom's own
// supervisor (`daemon supervise`). The CLI's `daemon` commands call these; nothing else needs to.
import { existsSync, rmSync } from "node:fs";
import { CleanroomError, messageOf } from "../errors/index.ts";
import { followLog, lastLogLines } from "./rotating-log.ts";
import { readInstallRecord, readOptional, serviceFiles, writeFileAtomic, type InstallRecord, type ServiceFiles } from "./service-files.ts";
import { defineService, type InstallFlags } from "./service-spec.ts";
import { runningSupervisor, startSupervisor, stopSupervisor, supervisorStatus } from "./supervised.ts";
import { journalctl, serviceManager, systemctl, systemdUnitState, type ServiceManager } from "./systemd.ts";
import { renderServiceUnit, UNIT_NAME } from "./systemd-unit.ts";

export { runSupervisor } from "./supervisor.ts";
export type { InstallFlags, ServiceManager };

export interface InstallResult {
  manager: ServiceManager;
  unitPath: string;
  installPath: string;
  /** false when the same unit was already installed */
  changed: boolean;
  /** systemd runs it now (enable --now), or the fallback restarted it for --restart */
  started: boolean;
  /** a daemon already running keeps its old command line until it is restarted */
  restartNeeded: boolean;
}

/** What `daemon status` reports. */
export interface ServiceStatus {
  manager: ServiceManager;
  installed: boolean;
  /** running: the daemon listens; starting/restarting: it is on its way; stopped; not-installed */
  state: "running" | "starting" | "restarting" | "stopping" | "stopped" | "not-installed";
  /** systemd's own words, e.g. "active (running)" */
  detail?: string;
  pid: number | null;
  supervisorPid: number | null;
  uptimeSeconds: number | null;
  restarts: number;
  listen: string | null;
  unitPath: string;
  logPath: string | null;
}

/**
 * Writes cleanroom.service and the install record; on systemd also reloads and `enable --now`s it. An existing
 * different unit is replaced only with `force`; `restart` restarts a running daemon onto the new command line.
 */
export async function installService(
  flags: InstallFlags,
  opts: { force?: boolean; restart?: boolean; /** runs once the flags are checked, before anything is written */ prepare?: () => Promise<void> },
  env: NodeJS.ProcessEnv = process.env,
): Promise<InstallResult> {
  const manager = serviceManager(env);
  const files = serviceFiles(env);
  const definition = await defineService(flags, env);
  const [execPath, ...launcherArgs] = definition.launcher as [string, ...string[]];
  const unit = renderServiceUnit({ execPath, args: [...launcherArgs, ...definition.serveArgs], environment: definition.environment });
  const existing = readOptional(files.unitPath);
  const changed = existing !== unit;
  if (existing !== undefined && changed && !opts.force) {
    throw new CleanroomError("already_exists", `${files.unitPath} already exists with other settings; pass --force to replace it`);
  }
  const record: InstallRecord = { version: 1, ...definition, unitPath: files.unitPath, installedAt: new Date().toISOString() };
  await opts.prepare?.();
  try {
    if (changed) writeFileAtomic(files.unitPath, unit);
    // readable by all, like the unit: `daemon status` works without root, and it holds no credentials
    writeFileAtomic(files.installPath, `${JSON.stringify(record, null, 2)}\n`);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "EACCES" || code === "EPERM") throw new CleanroomError("permission_denied", `${messageOf(err)}; installing the daemon needs root (sudo cleanroom daemon install)`);
    throw err;
  }
  let started = false;
  const wasRunning = manager === "systemd" ? existing !== undefined && (await systemdUnitState()).active : runningSupervisor(files) !== undefined;
  if (manager === "systemd") {
    await systemctl(["daemon-reload"]);
    await systemctl(["enable", "--now", UNIT_NAME]); // starts it unless it runs
    if (opts.restart && wasRunning) await systemctl(["restart", UNIT_NAME]);
    started = true;
  } else if (opts.restart && wasRunning) {
    await stopSupervisor(files);
    await startSupervisor(files, record);
    started = true;
  }
  const restartNeeded = wasRunning && changed && !opts.restart;
  return { manager, unitPath: files.unitPath, installPath: files.installPath, changed, started, restartNeeded };
}

/** Stops the daemon and removes the unit and the fallback's files; the config and the daemon's data stay. */
export async function uninstallService(env: NodeJS.ProcessEnv = process.env): Promise<{ removed: string[] }> {
  const manager = serviceManager(env);
  const files = serviceFiles(env);
  if (manager === "systemd" && existsSync(files.unitPath)) await systemctl(["disable", "--now", UNIT_NAME]);
  await stopSupervisor(files);
  const removed = [files.unitPath, files.stateDir, files.runDir].filter((path) => existsSync(path));
  rmSync(files.unitPath, { force: true });
  rmSync(files.stateDir, { recursive: true, force: true });
  rmSync(files.runDir, { recursive: true, force: true });
  if (manager === "systemd") await systemctl(["daemon-reload"]);
  return { removed };
}

export async function startService(env: NodeJS.ProcessEnv = process.env): Promise<ServiceStatus> {
  const files = serviceFiles(env);
  const install = requireInstalled(files);
  if (serviceManager(env) === "systemd") await systemctl(["start", UNIT_NAME]);
  else await startSupervisor(files, install);
  return serviceStatus(env);
}

/** Stops the daemon; resolves to whether one was running. */
export async function stopService(env: NodeJS.ProcessEnv = process.env): Promise<boolean> {
  const files = serviceFiles(env);
  requireInstalled(files);
  if (serviceManager(env) === "systemd") {
    const wasActive = (await systemdUnitState()).active;
    await systemctl(["stop", UNIT_NAME]);
    return wasActive;
  }
  const stopped = await stopSupervisor(files);
  return stopped.supervisorPid !== undefined || stopped.servePid !== undefined;
}

export async function restartService(env: NodeJS.ProcessEnv = process.env): Promise<ServiceStatus> {
  const files = serviceFiles(env);
  const install = requireInstalled(files);
  if (serviceManager(env) === "systemd") {
    await systemctl(["restart", UNIT_NAME]);
  } else {
    await stopSupervisor(files);
    await startSupervisor(files, install);
  }
  return serviceStatus(env);
}

export async function serviceStatus(env: NodeJS.ProcessEnv = process.env): Promise<ServiceStatus> {
  const manager = serviceManager(env);
  const files = serviceFiles(env);
  const install = readInstallRecord(files.installPath);
  const base = { manager, unitPath: files.unitPath, pid: null, supervisorPid: null, uptimeSeconds: null, restarts: 0 };
  if (manager === "systemd") {
    const unit = await systemdUnitState();
    if (!unit.loaded) return { ...base, installed: false, state: "not-installed", listen: null, logPath: null };
    return {
      ...base, installed: true, state: unit.active ? "running" : "stopped", detail: unit.description,
      pid: unit.pid, uptimeSeconds: unit.uptimeSeconds, restarts: unit.restarts, listen: install?.listen ?? null, logPath: null,
    };
  }
  if (!install) return { ...base, installed: false, state: "not-installed", listen: null, logPath: null };
  const status = supervisorStatus(files);
  if (!status) return { ...base, installed: true, state: "stopped", listen: install.listen, logPath: files.logPath };
  return {
    ...base,
    installed: true,
    state: status.state,
    pid: status.servePid,
    supervisorPid: status.supervisorPid,
    uptimeSeconds: status.serveStartedAt && status.servePid ? Math.round((Date.now() - Date.parse(status.serveStartedAt)) / 1000) : null,
    restarts: status.restarts,
    listen: status.listenUrl ?? install.listen,
    logPath: files.logPath,
  };
}

/** Prints the daemon's last `lines` log lines, then with `follow` what it logs until interrupted; the exit code. */
export async function showServiceLogs(opts: { lines: number; follow: boolean }, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  if (serviceManager(env) === "systemd") return journalctl(opts.lines, opts.follow);
  const files = serviceFiles(env);
  requireInstalled(files);
  let lines: string[];
  try {
    lines = lastLogLines(files.logPath, opts.lines);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EACCES") throw new CleanroomError("permission_denied", `${files.logPath}: only root may read the daemon's log`);
    throw err;
  }
  if (lines.length) process.stdout.write(`${lines.join("\n")}\n`);
  if (!opts.follow) return 0;
  const interrupted = new AbortController();
  const stop = () => interrupted.abort();
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  await followLog(files.logPath, (chunk) => process.stdout.write(chunk), interrupted.signal);
  return 0;
}

function requireInstalled(files: ServiceFiles): InstallRecord {
  const install = readInstallRecord(files.installPath);
  if (!install) throw new CleanroomError("not_found", "the daemon is not installed as a service; run `cleanroom daemon install` first");
  return install;
}
