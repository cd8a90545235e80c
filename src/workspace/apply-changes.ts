/**
 * Writes a sandbox's changes into the local checkout without ever leaving it: every path was checked by
 * `checkoutPathProblem`, every directory on the way is lstat'ed (a symlink is never followed, and never written
 * through), files are written to a temporary name beside their target and renamed into place, so a symlink at the
 * target is replaced rather than followed.
 */
import { spawn } from "node:child_process";
import { createWriteStream } from "node:fs";
import { chmod, lstat, mkdir, rename, rm, rmdir, symlink, unlink } from "node:fs/promises";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { randomBytes } from "node:crypto";
import { CleanroomError } from "../errors/index.ts";
import { git } from "./local-checkout.ts";
import type { TreeChange } from "./tree-changes.ts";

/** a symlink's target longer than this is not one Git would have made */
const MAX_SYMLINK_TARGET_BYTES = 4096;

export interface TargetProblem {
  path: string;
  reason: string;
  /** `--force` may overwrite it (local content); otherwise the change can never be applied here */
  forceable: boolean;
}

/** What stands in the way of `changes` on disk: directories, symlinks on the way, ignored files that would be lost. */
export async function checkTargets(root: string, changes: readonly TreeChange[], localChanges: ReadonlyMap<string, TreeChange>): Promise<TargetProblem[]> {
  const problems: TargetProblem[] = [];
  const deleted = new Set(changes.filter((c) => !c.after).map((c) => c.path));
  for (const change of changes) {
    const components = change.path.split("/");
    for (let i = 1; i < components.length; i++) {
      const parent = components.slice(0, i).join("/");
      const info = await lstatOrUndefined(join(root, parent));
      if (!info || info.isDirectory()) continue;
      // the same copy-out removes it first (the sandbox turned a file or symlink into a directory)
      if (deleted.has(parent)) break;
      const what = info.isSymbolicLink() ? "a symlink here; Cleanroom never writes through one" : "a file here";
      problems.push({ path: change.path, reason: `${parent} is ${what}`, forceable: false });
      break;
    }
    const target = await lstatOrUndefined(join(root, change.path));
    if (target?.isDirectory()) problems.push({ path: change.path, reason: "a directory here", forceable: false });
    else if (target && change.after && !change.before && !localChanges.has(change.path)) {
      problems.push({ path: change.path, reason: "an ignored file here would be overwritten", forceable: true });
    }
  }
  return problems;
}

/** Applies `changes` (deletions first) under `root`; blobs come from the local repository, where they were fetched. */
export async function applyChanges(root: string, changes: readonly TreeChange[]): Promise<void> {
  for (const change of changes) {
    const target = join(root, change.path);
    if (!change.after) {
      await removeFile(root, change.path);
      continue;
    }
    const parent = await makeParents(root, change.path);
    const temp = join(parent, `.cleanroom-${randomBytes(6).toString("hex")}`);
    try {
      if (change.after.kind === "symlink") {
        const linkTarget = await symlinkTarget(root, change.after.oid);
        if (linkTarget.includes("\0")) throw new CleanroomError("invalid_argument", `${change.path}: the symlink target has a NUL byte`);
        await symlink(linkTarget, temp);
      } else {
        await pipeBlob(root, change.after.oid, temp);
        await chmod(temp, change.after.kind === "executable" ? 0o755 : 0o644);
      }
      await rename(temp, target);
    } catch (err) {
      await rm(temp, { force: true });
      throw err;
    }
  }
}

/** The parent directory of `path` under `root`, made where missing; a symlink or file on the way is refused. */
async function makeParents(root: string, path: string): Promise<string> {
  let dir = root;
  for (const component of path.split("/").slice(0, -1)) {
    dir = join(dir, component);
    const info = await lstatOrUndefined(dir);
    if (!info) await mkdir(dir, { mode: 0o755 });
    else if (!info.isDirectory()) throw new CleanroomError("failed_precondition", `${path}: ${component} is not a directory here; nothing was written through it`);
  }
  return dir;
}

/** Removes a file or symlink (never a directory), then the directories it leaves empty. */
async function removeFile(root: string, path: string): Promise<void> {
  const components = path.split("/");
  for (let i = 1; i < components.length; i++) {
    const info = await lstatOrUndefined(join(root, ...components.slice(0, i)));
    if (!info?.isDirectory()) return; // gone already, or not reachable without following a link
  }
  const info = await lstatOrUndefined(join(root, path));
  if (!info || info.isDirectory()) return;
  await unlink(join(root, path));
  for (let i = components.length - 1; i > 0; i--) {
    const removed = await rmdir(join(root, ...components.slice(0, i))).then(() => true, () => false);
    if (!removed) return;
  }
}

/** `git cat-file blob` into a new file (exclusive create). */
async function pipeBlob(root: string, oid: string, file: string): Promise<void> {
  const child = spawn("git", ["-C", root, "cat-file", "blob", oid], { stdio: ["ignore", "pipe", "pipe"] });
  const exited = exitOf(child, `git cat-file blob ${oid}`);
  await Promise.all([pipeline(child.stdout, createWriteStream(file, { flags: "wx", mode: 0o600 })), exited]);
}

/** A symlink's target as Git stores it (the blob's content), refused when longer than any Git would have made. */
async function symlinkTarget(root: string, oid: string): Promise<string> {
  const size = Number(await git(root, ["cat-file", "-s", oid]));
  if (!(size <= MAX_SYMLINK_TARGET_BYTES)) throw new CleanroomError("invalid_argument", `blob ${oid} is larger than ${MAX_SYMLINK_TARGET_BYTES} bytes`);
  return git(root, ["cat-file", "blob", oid]);
}

function exitOf(child: ReturnType<typeof spawn>, what: string): Promise<void> {
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    if (stderr.length < 4096) stderr += chunk.toString("utf8");
  });
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve() : reject(new CleanroomError("failed_precondition", `${what} failed: ${stderr.trim() || `exit ${code}`}`))));
  });
}

function lstatOrUndefined(path: string) {
  return lstat(path).catch(() => undefined);
}
