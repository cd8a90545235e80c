import { findPolicyFile, loadPolicyFile } from "../../policy/index.ts";
import { CleanroomError } from "../../errors/index.ts";
import { printJson } from "../output.ts";

/** `policy validate`: the source path and hash, or the first mistake with file:line:column. */
export async function validatePolicy(flags: { chdir?: string; json?: boolean }): Promise<number> {
  const dir = flags.chdir ?? process.cwd();
  const found = await findPolicyFile(dir);
  if (!found) throw new CleanroomError("policy_invalid", `no cleanroom.yaml or .buildkite/cleanroom.yaml in ${dir}`);
  const loaded = await loadPolicyFile(found.path, found.warnings);
  if (flags.json) {
    printJson({ source: loaded.source, policy_hash: loaded.hash, warnings: loaded.warnings, policy: loaded.policy });
    return 0;
  }
  for (const warning of loaded.warnings) process.stderr.write(`cleanroom: warning: ${warning}\n`);
  process.stdout.write(`${loaded.source}\n${loaded.hash}\n`);
  return 0;
}
