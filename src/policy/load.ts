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
  return compilePolicyText(await readFile(path, "utf8"), path, warnings);
}

/** Validates and compiles policy YAML read from elsewhere (a commit); `source` names it in errors. */
export async function compilePolicyText(text: string, source: string, warnings: string[] = []): Promise<LoadedPolicy> {
  if (Buffer.byteLength(text) > MAX_YAML_BYTES) throw new CleanroomError("policy_invalid", `${source}: larger than ${MAX_YAML_BYTES} bytes`);
  const file = await parseYaml(text, policyFileSchema, source, "policy_invalid");
  const policy = compilePolicy(file);
  return { source, policy, hash: policyHash(policy), warnings };
}
