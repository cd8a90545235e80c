import { existsSync } from "node:fs";
import { runtimeConfigPath } from "../../config/index.ts";
import { CleanroomError } from "../../errors/index.ts";
import {
  installService, restartService, runSupervisor, serviceStatus, showServiceLogs, startService, stopService, uninstallService,
  type InstallFlags, type ServiceStatus,
} from "../../service/index.ts";
import { printJson } from "../output.ts";

/** `daemon status` exit codes, as systemctl's: 3 when not running, 4 when there is no such service. */
const STOPPED_EXIT = 3;
const NOT_INSTALLED_EXIT = 4;

function requireRoot(what: string): void {
  if (process.getuid?.() !== 0) throw new CleanroomError("permission_denied", `${what} needs root: the daemon runs as root (sudo cleanroom daemon …)`);
}

/** `daemon install`: the unit (and on hosts without systemd, the supervised fallback's record); --init-config adds a starter config. */
export async function installDaemon(flags: InstallFlags & { initConfig?: boolean; force?: boolean; restart?: boolean }): Promise<number> {
  requireRoot("installing the daemon");
  const { initConfig, force, restart, ...serveFlags } = flags;
  const prepare = async () => {
    if (!initConfig) return;
    const path = runtimeConfigPath();
    if (existsSync(path)) {
      process.stdout.write(`config: ${path} (kept)\n`);
      return;
    }
    process.stdout.write("config: ");
    await (await import("./config.ts")).initConfig({ path });
  };
  const result = await installService(serveFlags, { force: Boolean(force), restart: Boolean(restart), prepare });
  process.stdout.write(`unit: ${result.unitPath}${result.changed ? "" : " (unchanged)"}\n`);
  if (result.manager === "systemd") {
    process.stdout.write("cleanroom.service is enabled and running\n");
  } else {
    process.stdout.write(`systemd is not running here: the unit waits for it. Until then \`cleanroom daemon start\` runs the daemon supervised (restarted when it dies; not started at boot)${result.started ? "; restarted it" : ""}\n`);
  }
  if (result.restartNeeded) process.stdout.write("the running daemon keeps its old settings until `cleanroom daemon restart`\n");
  return 0;
}

export async function uninstallDaemon(): Promise<number> {
  requireRoot("uninstalling the daemon");
  const { removed } = await uninstallService();
  process.stdout.write(removed.length ? removed.map((path) => `removed ${path}\n`).join("") : "the daemon was not installed\n");
  return 0;
}

export async function startDaemon(flags: { json?: boolean }): Promise<number> {
  requireRoot("starting the daemon");
  return printStatus(await startService(), Boolean(flags.json));
}

export async function stopDaemon(): Promise<number> {
  requireRoot("stopping the daemon");
  process.stdout.write((await stopService()) ? "stopped\n" : "the daemon was not running\n");
  return 0;
}

export async function restartDaemon(flags: { json?: boolean }): Promise<number> {
  requireRoot("restarting the daemon");
  return printStatus(await restartService(), Boolean(flags.json));
}

export async function daemonStatus(flags: { json?: boolean }): Promise<number> {
  return printStatus(await serviceStatus(), Boolean(flags.json));
}

export async function daemonLogs(flags: { lines?: string; follow?: boolean }): Promise<number> {
  const lines = Number(flags.lines ?? "100");
  if (!/^\d+$/.test(flags.lines ?? "100") || !Number.isSafeInteger(lines)) {
    throw new CleanroomError("invalid_argument", `-n ${flags.lines}: expected a number of lines, e.g. -n 200`);
  }
  return showServiceLogs({ lines, follow: Boolean(flags.follow) });
}

/** The hidden `daemon supervise`: the fallback's supervisor, started detached by `daemon start`. */
export async function superviseDaemon(): Promise<number> {
  return runSupervisor();
}

function printStatus(status: ServiceStatus, json: boolean): number {
  const exitCode = status.state === "running" ? 0 : status.state === "not-installed" ? NOT_INSTALLED_EXIT : STOPPED_EXIT;
  if (json) {
    printJson({
      manager: status.manager, installed: status.installed, state: status.state, ...(status.detail ? { detail: status.detail } : {}),
      pid: status.pid, supervisor_pid: status.supervisorPid, uptime_seconds: status.uptimeSeconds, restarts: status.restarts,
      listen: status.listen, unit_path: status.unitPath, log_path: status.logPath,
    });
    return exitCode;
  }
  const how = status.manager === "systemd" ? `systemd: ${status.detail ?? status.state}` : "supervised: systemd is not running here";
  const rows: [string, string | null][] = [
    ["pid", status.pid === null ? null : `${status.pid}${status.supervisorPid ? ` (supervisor ${status.supervisorPid})` : ""}`],
    ["uptime", status.uptimeSeconds === null ? null : duration(status.uptimeSeconds)],
    ["restarts", status.installed ? String(status.restarts) : null],
    ["listen", status.listen],
    ["unit", status.installed ? status.unitPath : null],
    ["log", status.logPath ?? (status.manager === "systemd" ? "journalctl -u cleanroom" : null)],
  ];
  process.stdout.write(`cleanroom daemon: ${status.state} (${how})\n`);
  for (const [name, value] of rows) if (value !== null) process.stdout.write(`  ${name.padEnd(9)} ${value}\n`);
  if (status.state === "not-installed") process.stdout.write("  install it with `cleanroom daemon install`\n");
  return exitCode;
}

function duration(seconds: number): string {
  const parts = [[Math.floor(seconds / 86400), "d"], [Math.floor(seconds / 3600) % 24, "h"], [Math.floor(seconds / 60) % 60, "m"], [seconds % 60, "s"]] as const;
  const shown = parts.filter(([value], i) => value > 0 || i === parts.length - 1);
  return shown.slice(0, 2).map(([value, unit]) => `${value}${unit}`).join(" ");
}
