import { printJson } from "../output.ts";
import { readRepositoryPolicy } from "../sandbox-source.ts";

/** `policy validate`: the source path and hash, or the first mistake with file:line:column. */
export async function validatePolicy(flags: { chdir?: string; json?: boolean }): Promise<number> {
  const loaded = (await readRepositoryPolicy(flags.chdir, true))!;
  if (flags.json) {
    printJson({ source: loaded.source, policy_hash: loaded.hash, warnings: loaded.warnings, policy: loaded.policy });
    return 0;
  }
  for (const warning of loaded.warnings) process.stderr.write(`cleanroom: warning: ${warning}\n`);
  process.stdout.write(`${loaded.source}\n${loaded.hash}\n`);
  return 0;
}
