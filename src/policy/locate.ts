import { stat } from "node:fs/promises";
import { join, resolve } from "node:path";

export const POLICY_FILES = ["cleanroom.yaml", ".buildkite/cleanroom.yaml"] as const;

/** The policy file of a repository directory: `cleanroom.yaml`, else `.buildkite/cleanroom.yaml`; undefined when neither exists. */
export async function findPolicyFile(dir: string): Promise<{ path: string; warnings: string[] } | undefined> {
  const found: string[] = [];
  for (const name of POLICY_FILES) {
    const path = join(resolve(dir), name);
    if (await stat(path).then((s) => s.isFile(), () => false)) found.push(path);
  }
  if (!found.length) return undefined;
  const warnings = found.length > 1 ? [`both ${found[0]} and ${found[1]} exist; using ${found[0]} (the root file wins)`] : [];
  return { path: found[0]!, warnings };
}
