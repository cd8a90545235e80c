// What the installed service runs, decided once at `daemon install` from its flags and the installing shell,
// and recorded so that the systemd unit and the supervised fallback run exactly the same command.
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { hostPaths, packageRoot } from "../config/index.ts";
import { CleanroomError } from "../errors/index.ts";
import { assertUnitValue } from "./systemd-unit.ts";

/** The flags of `daemon install` that shape the daemon's command line. */
export interface InstallFlags {
  listen?: string;
  tlsCert?: string;
  tlsKey?: string;
  gatewayListen?: string;
  logLevel?: string;
}

/** The daemon as a service: how to start node on this package, the `serve` arguments, the environment. */
export interface ServiceDefinition {
  /** node, its flags and the CLI entry; `serve …` runs the daemon, `daemon supervise` the fallback's supervisor */
  launcher: string[];
  serveArgs: string[];
  /** added to the service manager's own environment */
  environment: Record<string, string>;
  /** where clients reach the daemon */
  listen: string;
}

/**
 * Settings that move the daemon's files, network or behaviour, carried from the installing shell into the
 * service so that it runs the daemon the shell would have run. Never credentials: those stay out of unit files.
 */
export const DAEMON_ENVIRONMENT = [
  "CLEANROOM_STATE_DIR",
  "CLEANROOM_RUN_DIR",
  "CLEANROOM_IMAGE_DIR",
  "CLEANROOM_AGENT_PATH",
  "CLEANROOM_NETWORK_TABLE",
  "CLEANROOM_NETWORK_PREFIX",
  "CLEANROOM_NETWORK_POOL",
  "CLEANROOM_DNS_SERVERS",
  "CLEANROOM_GATEWAY_LISTEN",
  "CLEANROOM_WARM_POOL",
  "CLEANROOM_LOG_LEVEL",
  "XDG_CONFIG_HOME",
] as const;

/** systemd's PATH for services; the fallback gives the daemon the same. */
export const SERVICE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const LOG_LEVELS = ["trace", "debug", "info", "warn", "error"];
const GATEWAY_LISTEN = /^(\d{1,3}(\.\d{1,3}){3})?:\d{1,5}$/;

/** node on this package's CLI entry: the bundle when built (as bin/cleanroom prefers), else the sources. */
export function cliLauncher(): string[] {
  const bundle = join(packageRoot, "dist", "cli", "main.js");
  const entry = existsSync(bundle) ? bundle : join(packageRoot, "src", "cli", "main.ts");
  return [process.execPath, "--disable-warning=ExperimentalWarning", entry];
}

/** Checks the install flags and turns them into the service's command line and environment. */
export async function defineService(flags: InstallFlags, env: NodeJS.ProcessEnv, launcher: string[] = cliLauncher()): Promise<ServiceDefinition> {
  for (const [name, value] of Object.entries(flags)) if (typeof value === "string") assertUnitValue(value, `--${kebab(name)}`);
  const serveArgs = ["serve"];
  if (flags.listen !== undefined) {
    const { parseListenAddress } = await import("../server/index.ts");
    parseListenAddress(flags.listen);
    serveArgs.push(`--listen=${flags.listen}`);
  }
  if ((flags.tlsCert === undefined) !== (flags.tlsKey === undefined)) {
    throw new CleanroomError("invalid_argument", "--tls-cert and --tls-key go together: pass both or neither");
  }
  if (flags.listen?.startsWith("https://") && flags.tlsCert === undefined) {
    throw new CleanroomError("invalid_argument", "an https:// --listen needs --tls-cert and --tls-key (PEM files)");
  }
  if (flags.tlsCert !== undefined && flags.tlsKey !== undefined) {
    if (!flags.listen?.startsWith("https://")) throw new CleanroomError("invalid_argument", "--tls-cert and --tls-key need an https:// --listen address");
    serveArgs.push(`--tls-cert=${existingFile(flags.tlsCert, "--tls-cert")}`, `--tls-key=${existingFile(flags.tlsKey, "--tls-key")}`);
  }
  if (flags.gatewayListen !== undefined) {
    if (!GATEWAY_LISTEN.test(flags.gatewayListen)) throw new CleanroomError("invalid_argument", `--gateway-listen ${flags.gatewayListen}: expected :PORT, IPV4:PORT or :0`);
    serveArgs.push(`--gateway-listen=${flags.gatewayListen}`);
  }
  if (flags.logLevel !== undefined) {
    if (!LOG_LEVELS.includes(flags.logLevel)) throw new CleanroomError("invalid_argument", `--log-level ${flags.logLevel}: expected one of ${LOG_LEVELS.join(", ")}`);
    serveArgs.push(`--log-level=${flags.logLevel}`);
  }
  for (const word of launcher) assertUnitValue(word, "the daemon's command line");
  return {
    launcher,
    serveArgs,
    environment: serviceEnvironment(env),
    listen: flags.listen ?? `unix://${hostPaths(env).socketPath}`,
  };
}

/** The DAEMON_ENVIRONMENT settings present in `env`, plus node's compile cache as bin/cleanroom sets it. */
export function serviceEnvironment(env: NodeJS.ProcessEnv): Record<string, string> {
  const environment: Record<string, string> = { NODE_COMPILE_CACHE: join(packageRoot, "dist", ".compile-cache") };
  for (const name of DAEMON_ENVIRONMENT) {
    const value = env[name];
    if (value === undefined || value === "") continue;
    assertUnitValue(value, name);
    environment[name] = value;
  }
  return environment;
}

/** A TLS file as an absolute path (the service runs in /), refusing one that is not there. */
function existingFile(path: string, flag: string): string {
  const absolute = resolve(path);
  if (!existsSync(absolute)) throw new CleanroomError("not_found", `${flag} ${absolute}: no such file`);
  return absolute;
}

function kebab(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}
