import { readFileSync } from "node:fs";
import { z } from "zod";
import { CleanroomError } from "../errors/index.ts";
import { runtimeConfigPath } from "./paths.ts";
import { parseYamlDocument } from "./yaml-document.ts";

const backendName = z.enum(["linux", "gvisor", "qemu"]);

const backendSettings = z.strictObject({
  vcpus: z.number().int().min(1).max(256).optional(),
  memory_mib: z.number().int().min(64).max(1024 * 1024).optional(),
  pids_limit: z.number().int().min(16).max(1_000_000).optional(),
  launch_seconds: z.number().int().min(1).max(3600).optional(),
});

/**
 * `$XDG_CONFIG_HOME/cleanroom/config.yaml`, strict: an unknown key fails rather than being ignored.
 * This build reads the keys below; the rest of Cleanroom's config surface arrives with the features it configures.
 */
export const runtimeConfigSchema = z.strictObject({
  default_backend: backendName.optional(),
  control_host: z.string().regex(/^(unix:\/\/\/|http:\/\/|https:\/\/)/, "expected unix:///path or http(s)://host:port").optional(),
  backends: z.strictObject({ linux: backendSettings.optional(), gvisor: backendSettings.optional(), qemu: backendSettings.optional() }).optional(),
  sandbox_lifecycle: z.strictObject({ warm_pool_size: z.number().int().min(0).max(16).optional() }).optional(),
});

export type RuntimeConfig = z.infer<typeof runtimeConfigSchema>;

/** Reads and validates the config; a missing file is an empty config, a broken one an error with its position. */
export function loadRuntimeConfig(path: string = runtimeConfigPath()): RuntimeConfig {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return {};
    throw new CleanroomError("invalid_argument", `cannot read ${path}: ${(err as Error).message}`);
  }
  return parseYamlDocument(text, runtimeConfigSchema, path, "invalid_argument");
}
