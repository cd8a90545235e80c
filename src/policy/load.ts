import { readFile, stat } from "node:fs/promises";
import { MAX_YAML_BYTES, parseYaml } from "../config/index.ts";
import { CleanroomError } from "../errors/index.ts";
import { compilePolicy, policyHash, type CompiledPolicy } from "./compile.ts";
import { policyFileSchema } from "./schema.ts";

export interface LoadedPolicy {
  /** absolute path of the file read */
  source: string;
  policy: CompiledPolicy;
  hash: string;
  warnings: string[];
}

/** Reads, validates and compiles `path`. Errors are `policy_invalid` with file:line:column. */
export async function loadPolicyFile(path: string, warnings: string[] = []): Promise<LoadedPolicy> {
  const info = await stat(path);
  if (info.size > MAX_YAML_BYTES) throw new CleanroomError("policy_invalid", `${path}: larger than ${MAX_YAML_BYTES} bytes`);
  const text = await readFile(path, "utf8");
  const file = await parseYaml(text, policyFileSchema, path, "policy_invalid");
  const policy = compilePolicy(file);
  return { source: path, policy, hash: policyHash(policy), warnings };
}
