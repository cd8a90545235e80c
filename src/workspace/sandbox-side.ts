/**
 * The sandbox's side of workspace sync: short shell scripts run by the sandbox's own git as the sandbox's user.
 * Every input arrives as an environment variable, never spliced into a script, and everything the sandbox prints
 * back is checked before it is used (a commit id is 40 hex digits, or the answer is refused).
 */
import { randomBytes } from "node:crypto";
import { CleanroomError } from "../errors/index.ts";
import { GIT_ENV } from "./local-checkout.ts";
import { SNAPSHOT_IDENTITY } from "./local-snapshot.ts";

/** What workspace sync needs of a sandbox; the CLI provides it over the daemon's API. */
export interface SandboxAccess {
  readonly id: string;
  /** runs `sh -c script` as the sandbox's user with `env` added */
  run(script: string, env: Record<string, string>): Promise<{ exitCode: number; stdout: string; stderr: string }>;
  upload(localFile: string, sandboxPath: string): Promise<void>;
  /** refuses a file larger than `maxBytes` */
  download(sandboxPath: string, localFile: string, maxBytes: number): Promise<void>;
  remove(sandboxPath: string): Promise<void>;
}

/** The repository checked out in a sandbox, as the daemon recorded it. */
export interface SandboxRepository {
  remoteUrl: string;
  commit: string;
  path: string;
}

const OID = /^[0-9a-f]{40}$/;
/** how many of the sandbox's refs are taken into account when choosing what the bundle leaves out */
const MAX_SANDBOX_REFS = 10_000;

const PRELUDE = String.raw`set -eu
command -v git >/dev/null 2>&1 || { echo "the sandbox image has no git" >&2; exit 3; }
cd "$CLEANROOM_WS_PATH" 2>/dev/null && [ -d .git ] || { echo "no Git checkout at $CLEANROOM_WS_PATH in the sandbox" >&2; exit 3; }
`;

/** Prints HEAD and the commits the sandbox's refs point at, one per line. */
const LIST_COMMITS = PRELUDE + String.raw`git rev-parse -q --verify 'HEAD^{commit}' || true
git for-each-ref --format='%(objectname)' | sort -u | head -n "$CLEANROOM_WS_MAX_REFS"
`;

/** Fetches the copy-in bundle, makes index and working tree match the snapshot, and moves HEAD to the local HEAD. */
const RECEIVE = PRELUDE + String.raw`# unbundle, not fetch: the bundle is the developer's own, so fetch's connectivity walk over every object is waste
if [ -n "$CLEANROOM_WS_BUNDLE" ]; then git bundle unbundle "$CLEANROOM_WS_BUNDLE" >/dev/null; fi
git cat-file -e "$CLEANROOM_WS_SNAPSHOT^{commit}" || { echo "the bundle did not carry the snapshot" >&2; exit 1; }
git update-ref refs/cleanroom/copy-in "$CLEANROOM_WS_SNAPSHOT"
# from the current index to the snapshot: files the last copy-in brought and the developer since deleted go too
git -c checkout.workers=0 read-tree -u --reset "$CLEANROOM_WS_SNAPSHOT"
if [ -n "$CLEANROOM_WS_BRANCH" ]; then
  git update-ref "refs/heads/$CLEANROOM_WS_BRANCH" "$CLEANROOM_WS_HEAD"
  git symbolic-ref HEAD "refs/heads/$CLEANROOM_WS_BRANCH"
else
  git update-ref --no-deref HEAD "$CLEANROOM_WS_HEAD"
fi
`;

/** Commits the working tree (tracked and unignored files) on top of HEAD and bundles it without the base. */
const SNAPSHOT = PRELUDE + String.raw`index=$(mktemp)
trap 'rm -f "$index"' EXIT
cp "$(git rev-parse --git-path index)" "$index" 2>/dev/null || GIT_INDEX_FILE=$index git read-tree --empty
# one pack for all new files instead of a loose object each (git's bulk check-in)
GIT_INDEX_FILE=$index git -c core.bigFileThreshold=1 add -A
tree=$(GIT_INDEX_FILE=$index git write-tree)
set --
head=$(git rev-parse -q --verify 'HEAD^{commit}' || true)
if [ -n "$head" ]; then set -- -p "$head"; fi
# the base as a parent too: the bundle then leaves out every object the base already carried
if git cat-file -e "$CLEANROOM_WS_BASE^{commit}" 2>/dev/null; then
  [ "$CLEANROOM_WS_BASE" = "$head" ] || set -- "$@" -p "$CLEANROOM_WS_BASE"
  exclude=^$CLEANROOM_WS_BASE
else
  exclude=
fi
commit=$(git commit-tree "$tree" "$@" -m "cleanroom copy-out")
git update-ref refs/cleanroom/copy-out "$commit"
git bundle create -q "$CLEANROOM_WS_BUNDLE" refs/cleanroom/copy-out $exclude
echo "$commit"
`;

/** The commits the sandbox's repository has refs (or HEAD) at. */
export async function sandboxCommits(sandbox: SandboxAccess, repo: SandboxRepository): Promise<string[]> {
  const out = await runChecked(sandbox, LIST_COMMITS, { CLEANROOM_WS_PATH: repo.path, CLEANROOM_WS_MAX_REFS: String(MAX_SANDBOX_REFS) }, "listing the sandbox's commits");
  return [...new Set(out.split("\n").filter((line) => OID.test(line)))];
}

/** Brings a copy-in into the sandbox: the bundle (if any) at `bundlePath`, then the snapshot as index and tree. */
export async function receiveCopyIn(sandbox: SandboxAccess, repo: SandboxRepository, input: { bundlePath?: string; bundleRef: string; snapshot: string; head: string; branch?: string }): Promise<void> {
  await runChecked(sandbox, RECEIVE, {
    CLEANROOM_WS_PATH: repo.path,
    CLEANROOM_WS_BUNDLE: input.bundlePath ?? "",
    CLEANROOM_WS_BUNDLE_REF: input.bundleRef,
    CLEANROOM_WS_SNAPSHOT: input.snapshot,
    CLEANROOM_WS_HEAD: input.head,
    CLEANROOM_WS_BRANCH: input.branch ?? "",
  }, "applying the copy-in in the sandbox");
}

/** Snapshots the sandbox's working tree into a bundle at `bundlePath`; returns the snapshot commit it reports. */
export async function bundleSandboxWorktree(sandbox: SandboxAccess, repo: SandboxRepository, base: string, bundlePath: string): Promise<string> {
  const out = await runChecked(sandbox, SNAPSHOT, { CLEANROOM_WS_PATH: repo.path, CLEANROOM_WS_BASE: base, CLEANROOM_WS_BUNDLE: bundlePath, ...SNAPSHOT_IDENTITY }, "snapshotting the sandbox's workspace");
  const commit = out.trim();
  if (!OID.test(commit)) throw new CleanroomError("agent_protocol_error", "the sandbox answered the snapshot with something that is not a commit id");
  return commit;
}

/** A fresh name for a transfer file in the sandbox's /tmp. */
export function transferPath(kind: "copy-in" | "copy-out"): string {
  return `/tmp/.cleanroom-${kind}-${randomBytes(8).toString("hex")}.bundle`;
}

async function runChecked(sandbox: SandboxAccess, script: string, env: Record<string, string>, what: string): Promise<string> {
  const result = await sandbox.run(script, {
    ...env,
    ...GIT_ENV,
    // the checkout may belong to another user than the one running git here; it is the sandbox's own anyway
    GIT_CONFIG_COUNT: "1", GIT_CONFIG_KEY_0: "safe.directory", GIT_CONFIG_VALUE_0: "*",
  });
  if (result.exitCode === 0) return result.stdout;
  const why = result.stderr.replace(/[^\x20-\x7e\n]/g, "?").trim().split("\n").slice(-4).join("; ") || `exit status ${result.exitCode}`;
  throw new CleanroomError("failed_precondition", `${what} failed: ${why}`);
}
