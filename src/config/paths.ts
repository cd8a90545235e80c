import { homedir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

/** Where the daemon keeps its state and runtime files on the host. */
export interface HostPaths {
  /** durable state: database, sandboxes, execution output */
  stateDir: string;
  /** content-addressed image store (may be shared between daemons) */
  imageDir: string;
  /** runtime files that die with the machine: sockets, runc state */
  runDir: string;
  /** the daemon's default API socket */
  socketPath: string;
  /** the static agent binary bind-mounted into every sandbox */
  agentPath: string;
}

/** The repository root, found from this file's location (src/config/). */
export const packageRoot: string = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

/** Default API socket: root's system socket, else the user's runtime dir. */
export function defaultSocketPath(env: NodeJS.ProcessEnv = process.env): string {
  if (process.getuid?.() === 0 || !env.XDG_RUNTIME_DIR) return "/var/run/cleanroom/cleanroom.sock";
  return join(env.XDG_RUNTIME_DIR, "cleanroom", "cleanroom.sock");
}

/** Host paths from the environment; every one can be moved for tests. */
export function hostPaths(env: NodeJS.ProcessEnv = process.env): HostPaths {
  const stateDir = env.CLEANROOM_STATE_DIR ?? "/var/lib/cleanroom";
  const runDir = env.CLEANROOM_RUN_DIR ?? "/run/cleanroom";
  return {
    stateDir,
    imageDir: env.CLEANROOM_IMAGE_DIR ?? join(stateDir, "images"),
    runDir,
    socketPath: defaultSocketPath(env),
    agentPath: env.CLEANROOM_AGENT_PATH ?? join(packageRoot, "dist", "cleanroom-agent"),
  };
}

/** Where the runtime config lives: `$XDG_CONFIG_HOME/cleanroom/config.yaml`, else `~/.config/…`. */
export function runtimeConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.XDG_CONFIG_HOME || join(homedir(), ".config"), "cleanroom", "config.yaml");
}

/** The user's HTTPS exposure CA: `$CLEANROOM_EXPOSURE_DIR`, else `$XDG_DATA_HOME/cleanroom/exposure` (`~/.local/share/…`). */
export function exposureDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.CLEANROOM_EXPOSURE_DIR || join(env.XDG_DATA_HOME || join(homedir(), ".local", "share"), "cleanroom", "exposure");
}
