import { existsSync } from "node:fs";
import { loadRuntimeConfig, runtimeConfigPath } from "../config/index.ts";

/**
 * The daemon endpoint: --host, then CLEANROOM_HOST, then the config's `control_host`; undefined leaves
 * the SDK's default socket. The config file is only parsed when it exists (start-up budget).
 */
export async function resolveHost(flag: string | undefined): Promise<string | undefined> {
  if (flag) return flag;
  if (process.env.CLEANROOM_HOST) return process.env.CLEANROOM_HOST;
  if (!existsSync(runtimeConfigPath())) return undefined;
  return (await loadRuntimeConfig()).control_host;
}
