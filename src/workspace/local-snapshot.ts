/**
 * The local side of workspace sync, all through the developer's own git and never touching their index or
 * branches: the working tree as a tree object (tracked and unignored files, built in a temporary index), commits
 * that carry it, bundles, and the binding of this checkout to a sandbox (refs under refs/cleanroom/sandboxes/<id>/).
 */
import { copyFile, mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CleanroomError } from "../errors/index.ts";
import { BULK_ADD, git } from "./local-checkout.ts";
import { parseTreeChanges, type TreeChange } from "./tree-changes.ts";

/** who Cleanroom's own commits are by; they never land on a branch */
export const SNAPSHOT_IDENTITY = {
  GIT_AUTHOR_NAME: "Cleanroom", GIT_AUTHOR_EMAIL: "cleanroom@localhost",
  GIT_COMMITTER_NAME: "Cleanroom", GIT_COMMITTER_EMAIL: "cleanroom@localhost",
};
const MAX_CHANGE_LIST_BYTES = 64 * 1024 * 1024;

/** The working tree's tracked and unignored files as a tree object, built in a temporary index. */
export async function snapshotWorktree(root: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "cleanroom-index-"));
  const env = { GIT_INDEX_FILE: join(dir, "index") };
  try {
    // starting from a copy of the real index lets git skip hashing files whose stat data did not change
    const real = (await git(root, ["rev-parse", "--path-format=absolute", "--git-path", "index"])).trim();
    const copied = await copyFile(real, env.GIT_INDEX_FILE).then(() => true, () => false);
    if (!copied) await git(root, ["read-tree", "--empty"], { env });
    await git(root, BULK_ADD, { env });
    return (await git(root, ["write-tree"], { env })).trim();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * A commit holding `tree` on top of `parents`, made for the transfer only. A second parent that the receiver
 * has (the last snapshot it got) lets a bundle leave out every object that snapshot already carried.
 */
export async function snapshotCommit(root: string, tree: string, parents: readonly string[], message: string): Promise<string> {
  return (await git(root, ["commit-tree", tree, ...parents.flatMap((parent) => ["-p", parent]), "-m", message], { env: SNAPSHOT_IDENTITY })).trim();
}

/** What changed from `from` to `to` (trees or commits). */
export async function treeChanges(root: string, from: string, to: string): Promise<TreeChange[]> {
  return parseTreeChanges(await git(root, ["diff-tree", "-r", "-z", "--no-renames", from, to], { maxOutputBytes: MAX_CHANGE_LIST_BYTES }));
}

/** Which of `oids` this repository has. */
export async function existingObjects(root: string, oids: readonly string[]): Promise<string[]> {
  if (!oids.length) return [];
  const out = await git(root, ["cat-file", "--batch-check"], { input: `${oids.join("\n")}\n` });
  return out.split("\n").filter((line) => /^[0-9a-f]{40} (commit|tag) /.test(line)).map((line) => line.slice(0, 40));
}

/** `git log --oneline` of commits reachable from `head` but from none of `exclude` (at most `limit`). */
export async function commitsNotIn(root: string, head: string, exclude: readonly string[], limit = 1000): Promise<string[]> {
  const input = [head, ...exclude.map((oid) => `^${oid}`)].join("\n");
  const out = await git(root, ["rev-list", "--oneline", `--max-count=${limit}`, "--stdin"], { input: `${input}\n` });
  return out.split("\n").filter(Boolean);
}

/** Writes a bundle of `ref` without what `exclude` reaches; returns its size. */
export async function createBundle(root: string, file: string, ref: string, exclude: readonly string[]): Promise<number> {
  const input = [ref, ...exclude.map((oid) => `^${oid}`)].join("\n");
  await git(root, ["bundle", "create", "-q", file, "--stdin"], { input: `${input}\n` });
  return (await stat(file)).size;
}

/**
 * Fetches `ref` of a bundle that came out of a sandbox into `into`. fetch checks the bundle is connected; the
 * fsck settings make newer git check each object too, but git 2.39 (Debian 12) does not fsck bundles, so what
 * protects the checkout is `checkoutPathProblem` on every path, not this.
 */
export async function fetchBundle(root: string, file: string, ref: string, into: string): Promise<string> {
  await git(root, [
    "-c", "transfer.fsckObjects=true", "-c", "fetch.fsckObjects=true",
    "fetch", "-q", "--no-tags", "--no-write-fetch-head", file, `+${ref}:${into}`,
  ]);
  const commit = await resolveCommit(root, into);
  if (!commit) throw new CleanroomError("agent_protocol_error", `the sandbox's bundle has no commit at ${ref}`);
  return commit;
}

/** The commit `rev` names here, or undefined. */
export async function resolveCommit(root: string, rev: string): Promise<string | undefined> {
  const out = await git(root, ["rev-parse", "-q", "--verify", `${rev}^{commit}`]).catch(() => "");
  return out.trim() || undefined;
}

export function updateRef(root: string, ref: string, oid: string): Promise<string> {
  return git(root, ["update-ref", ref, oid]);
}

export function deleteRef(root: string, ref: string): Promise<string> {
  return git(root, ["update-ref", "-d", ref]).catch(() => "");
}

/**
 * Deletes the binding refs of every sandbox `keep` rejects (terminated ones): without this each sandbox ever synced
 * would leave its refs, and the objects they hold, in the developer's repository for good. Returns the ids dropped.
 */
export async function pruneBindings(root: string, keep: (sandboxId: string) => boolean): Promise<string[]> {
  const refs = (await git(root, ["for-each-ref", "--format=%(refname)", BINDINGS_PREFIX])).split("\n").filter(Boolean);
  const dropped = new Set<string>();
  for (const ref of refs) {
    const id = ref.slice(BINDINGS_PREFIX.length).split("/")[0] ?? "";
    if (keep(id)) continue;
    await deleteRef(root, ref);
    dropped.add(id);
  }
  return [...dropped];
}

const BINDINGS_PREFIX = "refs/cleanroom/sandboxes/";

/** The refs that bind this checkout to a sandbox: `base` is what both sides last agreed the workspace was. */
export function bindingRef(sandboxId: string, name: "base" | "outgoing" | "incoming"): string {
  if (!/^[a-z0-9]{1,64}$/.test(sandboxId)) throw new CleanroomError("invalid_argument", `${JSON.stringify(sandboxId)} is not a sandbox id`);
  return `${BINDINGS_PREFIX}${sandboxId}/${name}`;
}
