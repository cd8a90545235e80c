/**
 * Workspace sync between the developer's checkout and a sandbox holding the same repository.
 * Copy-in: the working tree (tracked and unignored files) becomes a snapshot commit on top of local HEAD; one
 * bounded bundle carries it and every local commit the sandbox lacks; the sandbox's index and working tree become
 * the snapshot and its HEAD the local HEAD. Copy-out: the sandbox snapshots its own working tree into a bundle,
 * which is fetched here (its paths checked one by one) and diffed against the last state both sides agreed on (the
 * binding's base); changes the developer did not also make are applied, conflicts refused unless forced.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CleanroomError } from "../errors/index.ts";
import { applyChanges, checkTargets, type TargetProblem } from "./apply-changes.ts";
import { planCopyOut, type CopyOutPlan } from "./copy-out-plan.ts";
import { checkoutState, git } from "./local-checkout.ts";
import {
  bindingRef, commitsNotIn, createBundle, deleteRef, existingObjects, fetchBundle, resolveCommit, snapshotCommit,
  snapshotWorktree, treeChanges, updateRef,
} from "./local-snapshot.ts";
import { httpsRemoteUrl } from "./remote-url.ts";
import { bundleSandboxWorktree, receiveCopyIn, sandboxCommits, transferPath, type SandboxAccess, type SandboxRepository } from "./sandbox-side.ts";
import type { TreeChange } from "./tree-changes.ts";

/** A bundle larger than this is refused in either direction: sync is for changes, not for whole histories. */
export const MAX_BUNDLE_BYTES = 1024 ** 3;

export interface CopyInResult {
  /** `git log --oneline` of the local commits the sandbox lacked */
  commits: string[];
  /** uncommitted changes, from local HEAD to the working tree */
  changes: TreeChange[];
  /** bytes sent (0 on a dry run, or when the sandbox had everything) */
  bundleBytes: number;
}

export async function copyIn(root: string, sandbox: SandboxAccess, repo: SandboxRepository, opts: { dryRun?: boolean } = {}): Promise<CopyInResult> {
  await requireSameRepository(root, repo);
  const state = await checkoutState(root);
  if (!state.commit) throw new CleanroomError("failed_precondition", `${root} has no commits yet; commit once before copying in`);
  const tree = await snapshotWorktree(root);
  const changes = await treeChanges(root, state.commit, tree);
  const theirs = await existingObjects(root, await sandboxCommits(sandbox, repo));
  const commits = await commitsNotIn(root, state.commit, theirs);
  if (opts.dryRun) return { commits, changes, bundleBytes: 0 };

  const lastSnapshot = await resolveCommit(root, bindingRef(sandbox.id, "base"));
  const parents = [state.commit, ...(lastSnapshot && lastSnapshot !== state.commit && theirs.includes(lastSnapshot) ? [lastSnapshot] : [])];
  const snapshot = await snapshotCommit(root, tree, parents, `cleanroom copy-in to ${sandbox.id}`);
  const outgoing = bindingRef(sandbox.id, "outgoing");
  const dir = await mkdtemp(join(tmpdir(), "cleanroom-copy-in-"));
  const remoteBundle = transferPath("copy-in");
  let bundleBytes = 0;
  try {
    const needed = !theirs.includes(snapshot);
    if (needed) {
      await updateRef(root, outgoing, snapshot);
      bundleBytes = await createBundle(root, join(dir, "copy-in.bundle"), outgoing, theirs);
      if (bundleBytes > MAX_BUNDLE_BYTES) throw new CleanroomError("resource_exhausted", `the copy-in bundle is ${bundleBytes} bytes, more than ${MAX_BUNDLE_BYTES}; push the local commits first`);
      await sandbox.upload(join(dir, "copy-in.bundle"), remoteBundle);
    }
    await receiveCopyIn(sandbox, repo, { ...(needed ? { bundlePath: remoteBundle } : {}), bundleRef: outgoing, snapshot, head: state.commit, ...(state.branch ? { branch: state.branch } : {}) });
    await updateRef(root, bindingRef(sandbox.id, "base"), snapshot);
    return { commits, changes, bundleBytes };
  } finally {
    if (bundleBytes) await sandbox.remove(remoteBundle).catch(() => undefined);
    await deleteRef(root, outgoing);
    await rm(dir, { recursive: true, force: true });
  }
}

/** The sandbox's working tree as a local commit, and the base it is compared with. */
export async function fetchSandboxWorkspace(root: string, sandbox: SandboxAccess, repo: SandboxRepository): Promise<{ base: string; snapshot: string }> {
  await requireSameRepository(root, repo);
  const base = (await resolveCommit(root, bindingRef(sandbox.id, "base"))) ?? (await resolveCommit(root, repo.commit));
  if (!base) throw new CleanroomError("failed_precondition", `this checkout lacks commit ${repo.commit.slice(0, 12)}, which sandbox ${sandbox.id} started from; run git fetch first`);
  const dir = await mkdtemp(join(tmpdir(), "cleanroom-copy-out-"));
  const remoteBundle = transferPath("copy-out");
  try {
    await bundleSandboxWorktree(sandbox, repo, base, remoteBundle);
    await sandbox.download(remoteBundle, join(dir, "copy-out.bundle"), MAX_BUNDLE_BYTES);
    const snapshot = await fetchBundle(root, join(dir, "copy-out.bundle"), "refs/cleanroom/copy-out", bindingRef(sandbox.id, "incoming"));
    return { base, snapshot };
  } finally {
    await sandbox.remove(remoteBundle).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}

export interface CopyOutResult extends CopyOutPlan {
  /** in the way on disk; only the forceable ones may be overwritten, and only when forced */
  blocked: TargetProblem[];
  applied: boolean;
}

/**
 * Applies the sandbox's changes here. Refuses (nothing written) when a change meets a local change or something
 * in its way; `force` overwrites local content, but a symlink or file on the way, or a directory where a file
 * goes, refuses even then.
 */
export async function copyOut(root: string, sandbox: SandboxAccess, repo: SandboxRepository, opts: { dryRun?: boolean; force?: boolean } = {}): Promise<CopyOutResult> {
  const { base, snapshot } = await fetchSandboxWorkspace(root, sandbox, repo);
  const sandboxChanges = await treeChanges(root, base, snapshot);
  const localChanges = new Map((await treeChanges(root, base, await snapshotWorktree(root))).map((change) => [change.path, change]));
  const plan = planCopyOut(sandboxChanges, localChanges, Boolean(opts.force));
  const blocked = await checkTargets(root, plan.apply, localChanges);
  const refused = blocked.filter((problem) => !problem.forceable || !opts.force);
  const result: CopyOutResult = { ...plan, blocked, applied: false };
  if (opts.dryRun) return result;
  if (refused.length || (plan.conflicts.length && !opts.force)) return result;
  await applyChanges(root, plan.apply);
  await updateRef(root, bindingRef(sandbox.id, "base"), snapshot);
  return { ...result, applied: true };
}

/** The sandbox must hold this checkout's repository: one of its remotes has the sandbox's URL. */
async function requireSameRepository(root: string, repo: SandboxRepository): Promise<void> {
  const out = await git(root, ["config", "--get-regexp", "^remote\\..*\\.url$"]).catch(() => "");
  for (const line of out.split("\n")) {
    const url = line.slice(line.indexOf(" ") + 1).trim();
    const https = url ? httpsRemoteUrl(url) : undefined;
    if (https && "url" in https && https.url === repo.remoteUrl) return;
  }
  throw new CleanroomError("failed_precondition", `sandbox holds ${repo.remoteUrl}, which is none of the remotes of ${root}`);
}
