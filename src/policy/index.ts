// cleanroom.yaml: schema (strict, with file:line:column errors), compilation, canonical hash, and the daemon's check.
// The door stays light: zod and yaml load only when a policy file is actually read or verified.
import type { LoadedPolicy } from "./load.ts";
import type { CompiledPolicy } from "./compile.ts";
import { findPolicyFile } from "./locate.ts";

export { compilePolicy, canonicalJson, policyHash, requiredCapabilities, STAGES, type CompiledPolicy, type CompiledBlock, type Stage } from "./compile.ts";
export { findPolicyFile, POLICY_FILES } from "./locate.ts";
export { parseShorthand, type AllowRule } from "./allow-entry.ts";
export { DEFAULT_EXPOSE_BASE, EXPOSURE_DOMAIN, expandExposeHosts, exposureHostProblem, isExposureLabel } from "./expose-hosts.ts";
export type { LoadedPolicy };

/** Reads, validates and compiles a policy file. Errors are `policy_invalid` with file:line:column. */
export async function loadPolicyFile(path: string, warnings: string[] = []): Promise<LoadedPolicy> {
  return (await import("./load.ts")).loadPolicyFile(path, warnings);
}

/** Validates and compiles policy YAML that is not a local file (e.g. cleanroom.yaml at a commit); `source` names it in errors. */
export async function compilePolicyText(text: string, source: string, warnings: string[] = []): Promise<LoadedPolicy> {
  return (await import("./load.ts")).compilePolicyText(text, source, warnings);
}

/** The compiled policy of a repository directory, or undefined when it has no policy file (then nothing heavy loads). */
export async function loadRepositoryPolicy(dir: string): Promise<LoadedPolicy | undefined> {
  const found = await findPolicyFile(dir);
  return found && loadPolicyFile(found.path, found.warnings);
}

/** The daemon's check of a client's compiled policy: well-formed, canonical, matching its hash; else `policy_invalid`. */
export async function verifyCompiledPolicy(json: string, expectedHash: string): Promise<CompiledPolicy> {
  return (await import("./verify.ts")).verifyCompiledPolicy(json, expectedHash);
}
