// The service on a host where systemd runs: systemctl for the life cycle, journalctl for the logs.
import { execFile, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { CleanroomError } from "../errors/index.ts";
import { UNIT_NAME } from "./systemd-unit.ts";

/** Who runs the service: systemd where it is PID 1's manager, else Cleanroom's own supervisor. */
export type ServiceManager = "systemd" | "supervisor";

/** `$CLEANROOM_SERVICE_MANAGER` (systemd|supervisor) when set (tests pin the fallback), else systemd if it runs. */
export function serviceManager(env: NodeJS.ProcessEnv = process.env): ServiceManager {
  const chosen = env.CLEANROOM_SERVICE_MANAGER;
  if (chosen === "systemd" || chosen === "supervisor") return chosen;
  if (chosen) throw new CleanroomError("invalid_argument", `CLEANROOM_SERVICE_MANAGER=${chosen}: expected systemd or supervisor`);
  // sd_booted(3): this directory exists exactly when systemd is the running init
  return existsSync("/run/systemd/system") ? "systemd" : "supervisor";
}

/** Runs `systemctl args…` (60 s at most); its stdout, or a CleanroomError carrying its stderr. */
export function systemctl(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile("systemctl", args, { timeout: 60_000, maxBuffer: 1024 * 1024, encoding: "utf8" }, (err, stdout, stderr) => {
      if (err) reject(new CleanroomError("failed_precondition", `systemctl ${args.join(" ")} failed: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
  });
}

/** What `systemctl show` says about the unit, in the shape `daemon status` reports. */
export interface SystemdUnitState {
  loaded: boolean;
  active: boolean;
  /** e.g. "active (running)", "inactive (dead)", "activating (auto-restart)" */
  description: string;
  pid: number | null;
  restarts: number;
  uptimeSeconds: number | null;
}

export const SHOW_PROPERTIES = ["LoadState", "ActiveState", "SubState", "MainPID", "NRestarts", "ExecMainStartTimestampMonotonic"];

/** Parses `systemctl show -p …` output; `bootSeconds` is the clock (/proc/uptime) the monotonic stamp is measured on. */
export function parseSystemctlShow(text: string, bootSeconds: number): SystemdUnitState {
  const props = new Map<string, string>();
  for (const line of text.split("\n")) {
    const eq = line.indexOf("=");
    if (eq > 0) props.set(line.slice(0, eq), line.slice(eq + 1));
  }
  const active = props.get("ActiveState") === "active";
  const pid = Number(props.get("MainPID") ?? 0);
  const startedUs = Number(props.get("ExecMainStartTimestampMonotonic") ?? 0);
  return {
    loaded: props.get("LoadState") === "loaded",
    active,
    description: `${props.get("ActiveState") ?? "unknown"} (${props.get("SubState") ?? "unknown"})`,
    pid: pid > 0 ? pid : null,
    restarts: Number(props.get("NRestarts") ?? 0) || 0,
    uptimeSeconds: active && startedUs > 0 ? Math.max(0, Math.round(bootSeconds - startedUs / 1e6)) : null,
  };
}

export async function systemdUnitState(): Promise<SystemdUnitState> {
  const text = await systemctl(["show", UNIT_NAME, ...SHOW_PROPERTIES.map((p) => `--property=${p}`)]);
  const bootSeconds = Number(readFileSync("/proc/uptime", "utf8").split(" ")[0]);
  return parseSystemctlShow(text, bootSeconds);
}

/** `journalctl -u cleanroom.service -n N [-f]` on this terminal; resolves to its exit code. */
export function journalctl(lines: number, follow: boolean): Promise<number> {
  const args = ["--unit", UNIT_NAME, "--lines", String(lines), "--no-pager", ...(follow ? ["--follow"] : [])];
  return new Promise((resolve, reject) => {
    const child = spawn("journalctl", args, { stdio: "inherit" });
    child.once("error", (err) => reject(new CleanroomError("failed_precondition", `journalctl: ${err.message}`)));
    child.once("exit", (code) => resolve(code ?? 1));
  });
}
