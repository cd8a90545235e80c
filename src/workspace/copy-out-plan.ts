/**
 * Which of a sandbox's changes copy-out may apply to the local checkout. Both sides are diffs from the same base
 * (what the sandbox last received or started from): a path the developer also changed, to something else, is a
 * conflict; `--force` lets the sandbox win those. Unsafe paths and submodule pointers are never applied.
 */
import { checkoutPathProblem, sameEntry, type TreeChange } from "./tree-changes.ts";

export interface CopyOutPlan {
  /** changes to make here, deletions first, then in path order */
  apply: TreeChange[];
  /** paths changed here and in the sandbox, differently (in `apply` too when forced) */
  conflicts: { path: string; reason: string }[];
  /** what is left alone, with the reason (unsafe path, submodule) */
  skipped: { path: string; reason: string }[];
  /** the sandbox's change is already here */
  alreadyHere: number;
}

export function planCopyOut(sandboxChanges: readonly TreeChange[], localChanges: ReadonlyMap<string, TreeChange>, force: boolean): CopyOutPlan {
  const plan: CopyOutPlan = { apply: [], conflicts: [], skipped: [], alreadyHere: 0 };
  for (const change of sandboxChanges) {
    const problem = checkoutPathProblem(change.path);
    if (problem) {
      plan.skipped.push({ path: printablePath(change.path), reason: `unsafe path: ${problem}` });
      continue;
    }
    if (change.before?.kind === "submodule" || change.after?.kind === "submodule") {
      plan.skipped.push({ path: change.path, reason: "submodule pointers are not copied out" });
      continue;
    }
    const local = localChanges.get(change.path);
    if (local && sameEntry(local.after, change.after)) {
      plan.alreadyHere++;
      continue;
    }
    if (local) {
      plan.conflicts.push({ path: change.path, reason: "changed here and in the sandbox" });
      if (!force) continue;
    }
    plan.apply.push(change);
  }
  plan.apply.sort((a, b) => Number(Boolean(a.after)) - Number(Boolean(b.after)) || (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return plan;
}

/** A path as it may be shown: control characters replaced. */
export function printablePath(path: string): string {
  // eslint-disable-next-line no-control-regex
  return path.slice(0, 512).replace(/[\x00-\x1f\x7f]/g, "?");
}
