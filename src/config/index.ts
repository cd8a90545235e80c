// The door stays light: zod and yaml load only when a config file is actually read (CLI start-up budget).
import type { ZodType } from "zod";
import type { ReasonCode } from "../errors/index.ts";
import type { RuntimeConfig } from "./runtime-config.ts";

export { hostPaths, defaultSocketPath, packageRoot, runtimeConfigPath, exposureDir, type HostPaths } from "./paths.ts";
export { sandboxIdRange, toHostId, type IdRange } from "./id-range.ts";
export { MAX_YAML_BYTES } from "./limits.ts";
export { parseSize } from "./size.ts";
export type { RuntimeConfig };

/** Reads and validates the runtime config; a missing file is `{}`, a broken one a CleanroomError with file:line:column. */
export async function loadRuntimeConfig(path?: string): Promise<RuntimeConfig> {
  const { loadRuntimeConfig: load } = await import("./runtime-config.ts");
  return path === undefined ? load() : load(path);
}

/** Parses YAML and validates it with `schema`; errors name file:line:column, the key path and the rule broken. */
export async function parseYaml<T>(text: string, schema: ZodType<T>, file: string, code: ReasonCode): Promise<T> {
  const { parseYamlDocument } = await import("./yaml-document.ts");
  return parseYamlDocument(text, schema, file, code);
}
export { isLoopbackHost } from "./loopback.ts";
export { BACKEND_NAMES, backendNamed, type BackendName } from "./backend-names.ts";

/** Reads an auth policy file (`bindings:`), as `auth.policy_file` or `auth check --policy-file` name it. */
export async function loadAuthPolicyFile(file: string): Promise<NonNullable<NonNullable<RuntimeConfig["auth"]>["policy"]>> {
  const { loadAuthPolicyFile: load } = await import("./runtime-config.ts");
  return load(file);
}
