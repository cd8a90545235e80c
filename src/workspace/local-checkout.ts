/**
 * The developer's Git checkout as the CLI sees it: its root, HEAD commit and branch, whether it has uncommitted
 * changes, a remote's URL, and files at HEAD. Two or three `git` runs, and none at all outside a checkout.
 */
import { execFile } from "node:child_process";
import { stat } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { CleanroomError } from "../errors/index.ts";

const GIT_TIMEOUT_MS = 30_000;
const MAX_GIT_OUTPUT_BYTES = 16 * 1024 * 1024;

export interface CheckoutState {
  root: string;
  /** HEAD's sha; undefined in a repository without commits */
  commit?: string;
  /** the checked-out branch; undefined when HEAD is detached */
  branch?: string;
  /** the branch's upstream as `<remote>/<branch>`, when it has one */
  upstream?: string;
  /** tracked changes or untracked, unignored files */
  dirty: boolean;
}

/** The root of the Git work tree holding `dir`, or undefined (found by looking for `.git`, no git run). */
export async function findCheckoutRoot(dir: string): Promise<string | undefined> {
  for (let current = resolve(dir); ; current = dirname(current)) {
    if (await stat(join(current, ".git")).then(() => true, () => false)) return current;
    if (dirname(current) === current) return undefined;
  }
}

/** HEAD, branch, upstream and cleanliness in one `git status`. */
export async function checkoutState(root: string): Promise<CheckoutState> {
  const out = await git(root, ["status", "--porcelain=v2", "--branch", "--untracked-files=normal"]);
  const state: CheckoutState = { root, dirty: false };
  for (const line of out.split("\n")) {
    if (!line) continue;
    if (!line.startsWith("# ")) {
      state.dirty = true;
      continue;
    }
    const [, key, value = ""] = line.split(" ", 3);
    if (key === "branch.oid" && /^[0-9a-f]{40}$/.test(value)) state.commit = value;
    else if (key === "branch.head" && value !== "(detached)") state.branch = value;
    else if (key === "branch.upstream") state.upstream = value;
  }
  return state;
}

/** The URL of `remote`, or undefined when the checkout has no such remote. */
export async function remoteUrl(root: string, remote: string): Promise<string | undefined> {
  if (!/^[A-Za-z0-9._\/-]+$/.test(remote)) throw new CleanroomError("policy_invalid", `repository.remote ${JSON.stringify(remote)} is not a remote name`);
  const url = await git(root, ["config", "--get", `remote.${remote}.url`]).catch(() => "");
  return url.trim() || undefined;
}

/**
 * The newest commit of `commit`'s history that a remote-tracking branch of `remote` holds, as far as this
 * checkout knows: `commit` itself when it was pushed, undefined when nothing of its history was.
 */
export async function pushedAncestor(root: string, commit: string, remote: string): Promise<string | undefined> {
  // no remote-tracking branches at all (never fetched): nothing is known, so the remote may well have it
  if (!(await git(root, ["for-each-ref", "--count=1", `refs/remotes/${remote}/`])).trim()) return commit;
  const out = await git(root, ["rev-list", "--boundary", "--topo-order", commit, "--not", `--remotes=${remote}`], { maxOutputBytes: 64 * 1024 * 1024 });
  if (!out.trim()) return commit; // nothing unpushed
  const boundary = out.split("\n").find((line) => /^-[0-9a-f]{40}$/.test(line));
  return boundary?.slice(1);
}

/** Which of `paths` exist at `commit` (as files). */
export async function filesAtCommit(root: string, commit: string, paths: readonly string[]): Promise<string[]> {
  const out = await git(root, ["ls-tree", "--name-only", "--full-tree", commit, "--", ...paths]);
  return out.split("\n").filter((line) => paths.includes(line));
}

/** A file's content at `commit`. */
export function fileAtCommit(root: string, commit: string, path: string): Promise<string> {
  return git(root, ["cat-file", "blob", `${commit}:${path}`]);
}

/**
 * The environment of every git run here. The malloc settings stop glibc from returning memory to the kernel
 * after every file: `git add` of 10k new files takes 1 s instead of 4 s with them.
 */
export const GIT_ENV = { GIT_TERMINAL_PROMPT: "0", LC_ALL: "C", MALLOC_TOP_PAD_: "67108864", MALLOC_TRIM_THRESHOLD_: "134217728" };

/**
 * `git add` with these streams new files straight into one pack instead of a loose object file each
 * (git's bulk check-in), which is what makes a 10k-file change set cheap to snapshot.
 */
export const BULK_ADD = ["-c", "core.bigFileThreshold=1", "add", "-A"];

export interface GitOptions {
  /** extra environment (e.g. GIT_INDEX_FILE for a temporary index) */
  env?: Record<string, string>;
  /** written to git's stdin */
  input?: string;
  /** default 16 MiB; git printing more is an error */
  maxOutputBytes?: number;
}

/** Runs git in `root` (argument array, timeout, bounded output); failure is failed_precondition with git's words. */
export function git(root: string, args: string[], opts: GitOptions = {}): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const child = execFile("git", ["-C", root, ...args], {
      timeout: GIT_TIMEOUT_MS,
      maxBuffer: opts.maxOutputBytes ?? MAX_GIT_OUTPUT_BYTES,
      env: { ...process.env, ...GIT_ENV, ...opts.env },
    }, (err, stdout, stderr) => {
      if (err) reject(new CleanroomError("failed_precondition", `git ${args[0]} in ${root} failed: ${(stderr || err.message).trim().split("\n").at(-1)}`));
      else resolvePromise(stdout);
    });
    child.stdin?.on("error", () => undefined);
    child.stdin?.end(opts.input ?? "");
  });
}
