// The door stays light: zod and yaml load only when a config file is actually read (CLI start-up budget).
import type { RuntimeConfig } from "./runtime-config.ts";

export { hostPaths, defaultSocketPath, packageRoot, runtimeConfigPath, type HostPaths } from "./paths.ts";
export { sandboxIdRange, toHostId, type IdRange } from "./id-range.ts";
export type { RuntimeConfig };

/** Reads and validates the runtime config; a missing file is `{}`, a broken one a CleanroomError with file:line:column. */
export async function loadRuntimeConfig(path?: string): Promise<RuntimeConfig> {
  const { loadRuntimeConfig: load } = await import("./runtime-config.ts");
  return path === undefined ? load() : load(path);
}
