// Renders cleanroom.service (pure). Every value that reaches the unit is checked and quoted here, so a
// --listen or a path can never end a line, start a new setting or split into extra arguments.
import { CleanroomError } from "../errors/index.ts";

/** The unit's name; `systemctl`, `journalctl -u` and the fallback all use it. */
export const UNIT_NAME = "cleanroom.service";

/** What the unit runs: the program, its arguments and the environment it adds. */
export interface ServiceUnitSpec {
  /** absolute path of the program (node) */
  execPath: string;
  /** node's flags, the CLI entry, `serve` and serve's flags */
  args: string[];
  /** environment the daemon gets beyond systemd's own */
  environment: Record<string, string>;
}

// C0, DEL and C1: a newline would start a new unit line; the others have no business in a path or address
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f]/;
const ENVIRONMENT_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Refuses a value a unit cannot carry safely: newlines and other control characters. */
export function assertUnitValue(value: string, what: string): void {
  if (CONTROL_CHARACTERS.test(value)) {
    throw new CleanroomError("invalid_argument", `${what}: ${JSON.stringify(value)} contains a newline or another control character, which cannot go into a systemd unit`);
  }
}

/**
 * One word of a unit setting, double-quoted per systemd.syntax(7): `\` and `"` are backslash-escaped and `%`
 * becomes `%%` (specifiers); where the setting expands variables (ExecStart=), `$` becomes `$$` too.
 */
export function quoteUnitWord(value: string, opts: { expandsVariables: boolean }): string {
  assertUnitValue(value, "unit value");
  let quoted = value.replace(/[\\"]/g, (c) => `\\${c}`).replace(/%/g, "%%");
  if (opts.expandsVariables) quoted = quoted.replace(/\$/g, "$$$$");
  return `"${quoted}"`;
}

/** The ExecStart= value: the program and its arguments, each quoted, with variables and specifiers kept literal. */
export function renderExecStart(execPath: string, args: string[]): string {
  if (!execPath.startsWith("/")) throw new CleanroomError("invalid_argument", `${execPath}: the service's program must be an absolute path`);
  return [execPath, ...args].map((word) => quoteUnitWord(word, { expandsVariables: true })).join(" ");
}

/** One Environment= line for NAME=value (Environment= expands specifiers but not variables). */
export function renderEnvironment(name: string, value: string): string {
  if (!ENVIRONMENT_NAME.test(name)) throw new CleanroomError("invalid_argument", `${JSON.stringify(name)}: not an environment variable name`);
  return `Environment=${quoteUnitWord(`${name}=${value}`, { expandsVariables: false })}`;
}

/** The text of cleanroom.service. */
export function renderServiceUnit(spec: ServiceUnitSpec): string {
  const environment = Object.entries(spec.environment)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, value]) => renderEnvironment(name, value));
  return [
    "# Written by `cleanroom daemon install`; change it with `cleanroom daemon install --force …`.",
    "[Unit]",
    "Description=Cleanroom sandbox daemon",
    "After=network-online.target",
    "Wants=network-online.target",
    "",
    "[Service]",
    "Type=simple",
    `ExecStart=${renderExecStart(spec.execPath, spec.args)}`,
    ...environment,
    "Restart=on-failure",
    "RestartSec=2s",
    // SIGTERM to the daemon alone, so it closes its listeners and records; SIGKILL only to what is left after it.
    // Sandboxes live in cgroups of their own and outlive a restart (the daemon reconciles them).
    "KillMode=mixed",
    "TimeoutStopSec=30s",
    "LimitNOFILE=1048576",
    "TasksMax=infinity",
    "",
    "[Install]",
    "WantedBy=multi-user.target",
    "",
  ].join("\n");
}
