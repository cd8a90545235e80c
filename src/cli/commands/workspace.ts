// `cleanroom workspace copy-in|diff|copy-out <id>` and the --copy-in/--copy-out/--sync of exec and console: the
// local checkout around the current directory against the repository checked out in a sandbox (src/workspace/).
import { spawn } from "node:child_process";
import { createReadStream, createWriteStream } from "node:fs";
import { stat } from "node:fs/promises";
import { createInterface } from "node:readline";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { CleanroomError } from "../../errors/index.ts";
import { Cleanroom, downloadFile, enumName, uploadFile } from "../../sdk/index.ts";
import {
  copyIn, copyOut, fetchSandboxWorkspace, findCheckoutRoot, printablePath, pruneBindings,
  type CopyInResult, type CopyOutResult, type SandboxAccess, type SandboxRepository, type TreeChange,
} from "../../workspace/index.ts";
import { formatBytes } from "../output.ts";
import { connectClient } from "../client.ts";

export interface WorkspaceFlags { host?: string; chdir?: string; dryRun?: boolean; force?: boolean }

/** how long one sandbox-side step (snapshot, fetch of a bundle) may take */
const STEP_TIMEOUT_SECONDS = 600;
/** lines of a change list printed before "… and N more" */
const MAX_LISTED = 200;

export async function workspaceCopyIn(id: string, flags: WorkspaceFlags): Promise<number> {
  const { root, access, repo, client } = await bind(id, flags);
  try {
    const result = await copyIn(root, access, repo, { dryRun: Boolean(flags.dryRun) });
    process.stdout.write(describeCopyIn(id, result, Boolean(flags.dryRun)));
    return 0;
  } finally {
    client.close();
  }
}

export async function workspaceCopyOut(id: string, flags: WorkspaceFlags): Promise<number> {
  const { root, access, repo, client } = await bind(id, flags);
  try {
    const result = await copyOut(root, access, repo, { dryRun: Boolean(flags.dryRun), force: Boolean(flags.force) });
    process.stdout.write(`${copyOutReport(id, result, Boolean(flags.dryRun)).join("\n")}\n`);
    return flags.dryRun || result.applied || isEmpty(result) ? 0 : 1;
  } finally {
    client.close();
  }
}

export async function workspaceDiff(id: string, flags: WorkspaceFlags): Promise<number> {
  const { root, access, repo, client } = await bind(id, flags);
  try {
    const { base, snapshot } = await fetchSandboxWorkspace(root, access, repo);
    await printDiff(root, base, snapshot);
    return 0;
  } finally {
    client.close();
  }
}

/** `exec --copy-in`: copies in before the command and says what went, on stderr. */
export async function copyInAround(client: Cleanroom, id: string, root: string): Promise<void> {
  const result = await copyIn(root, sandboxAccess(client, id), await sandboxRepository(client, id));
  process.stderr.write(`cleanroom: ${summaryOfCopyIn(id, result, false)}\n`);
}

/** `exec --copy-out`: copies out after the command; false when it refused (conflicts), with the list on stderr. */
export async function copyOutAround(client: Cleanroom, id: string, root: string): Promise<boolean> {
  const result = await copyOut(root, sandboxAccess(client, id), await sandboxRepository(client, id));
  for (const line of copyOutReport(id, result, false)) process.stderr.write(`cleanroom: ${line}\n`);
  return result.applied || isEmpty(result);
}

async function bind(id: string, flags: WorkspaceFlags) {
  const root = await findCheckoutRoot(flags.chdir ?? process.cwd());
  if (!root) throw new CleanroomError("failed_precondition", `${flags.chdir ?? process.cwd()} is not inside a Git checkout; workspace sync needs one`);
  const client = connectClient(flags);
  try {
    const bound = { root, client, access: sandboxAccess(client, id), repo: await sandboxRepository(client, id) };
    await forgetEndedBindings(client, root);
    return bound;
  } catch (err) {
    client.close();
    throw err;
  }
}

/**
 * Drops this checkout's binding refs of sandboxes the daemon reports terminated. Only those: a sandbox it does not
 * know may live on another daemon this checkout also syncs with. Best effort; refs left now go next time.
 */
async function forgetEndedBindings(client: Cleanroom, root: string): Promise<void> {
  try {
    const { sandboxes = [] } = await client.sandboxes.listSandboxes({ all: true });
    const ended = new Set(sandboxes.filter((s) => ["STOPPED", "FAILED"].includes(enumName(s.status, "SANDBOX_STATUS_"))).map((s) => s.sandboxId));
    await pruneBindings(root, (id) => !ended.has(id));
  } catch {
    // listing or git failed: the binding refs stay until a later sync
  }
}

/** The repository the daemon checked out in the sandbox. */
export async function sandboxRepository(client: Cleanroom, id: string): Promise<SandboxRepository> {
  const repo = (await client.sandboxes.getSandbox({ sandboxId: id })).sandbox?.repository;
  if (!repo?.remoteUrl || !repo.commit || !repo.path) {
    throw new CleanroomError("failed_precondition", `sandbox ${id} holds no repository checkout; create it inside a checkout whose committed cleanroom.yaml enables the repository, or with --repo-url`);
  }
  return { remoteUrl: repo.remoteUrl, commit: repo.commit, path: repo.path };
}

/** Workspace sync's view of a sandbox, over the daemon's execution and file RPCs. */
export function sandboxAccess(client: Cleanroom, id: string): SandboxAccess {
  const sandbox = client.sandbox(id);
  return {
    id,
    async run(script, env) {
      const result = await sandbox.exec(["sh", "-c", script], { env: Object.entries(env).map(([key, value]) => `${key}=${value}`), timeoutSeconds: STEP_TIMEOUT_SECONDS, skipRunBefore: true });
      if (result.status === "TIMED_OUT") throw new CleanroomError("execution_failed", `a workspace step in sandbox ${id} took longer than ${STEP_TIMEOUT_SECONDS}s`);
      return { exitCode: result.exitCode, stdout: result.stdout.toString("utf8"), stderr: result.stderr.toString("utf8") };
    },
    async upload(localFile, sandboxPath) {
      const { size } = await stat(localFile);
      await uploadFile(client, id, sandboxPath, createReadStream(localFile), { size, mode: 0o644 });
    },
    async download(sandboxPath, localFile, maxBytes) {
      const { content } = await downloadFile(client, id, sandboxPath, maxBytes);
      await pipeline(Readable.from(content), createWriteStream(localFile, { flags: "wx", mode: 0o600 }));
    },
    async remove(sandboxPath) {
      await client.sandboxes.removeSandboxPath({ sandboxId: id, path: sandboxPath, recursive: false });
    },
  };
}

/** `git diff base snapshot`, with any control character the sandbox put in a file shown as `?` (colour kept). */
async function printDiff(root: string, base: string, snapshot: string): Promise<void> {
  const color = process.stdout.isTTY ? "always" : "never";
  const child = spawn("git", ["-C", root, "diff", `--color=${color}`, base, snapshot], { stdio: ["ignore", "pipe", "inherit"] });
  const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
  for await (const line of createInterface({ input: child.stdout, crlfDelay: Infinity })) {
    // eslint-disable-next-line no-control-regex
    const safe = line.replace(/\x1b\[[0-9;]*m|[\x00-\x08\x0b-\x1f\x7f]/g, (match) => (match.length > 1 && color === "always" ? match : "?"));
    if (!process.stdout.write(`${safe}\n`)) await new Promise((resolve) => process.stdout.once("drain", resolve));
  }
  const code = await exited;
  if (code !== 0) throw new CleanroomError("failed_precondition", `git diff exited with ${code}`);
}

function describeCopyIn(id: string, result: CopyInResult, dryRun: boolean): string {
  const lines = [summaryOfCopyIn(id, result, dryRun)];
  for (const commit of limited(result.commits)) lines.push(`  commit ${commit}`);
  for (const change of limited(result.changes.map((c) => `${letterOf(c)} ${printablePath(c.path)}`))) lines.push(`  ${change}`);
  return `${lines.join("\n")}\n`;
}

function summaryOfCopyIn(id: string, result: CopyInResult, dryRun: boolean): string {
  const what = `${plural(result.commits.length, "local commit")} and ${plural(result.changes.length, "uncommitted change")}`;
  return dryRun ? `copy-in to ${id} would send ${what}` : `copied in to ${id}: ${what} (bundle ${formatBytes(result.bundleBytes)})`;
}

function copyOutReport(id: string, result: CopyOutResult, dryRun: boolean): string[] {
  const lines: string[] = [];
  const conflicted = new Set(result.conflicts.map((c) => c.path));
  for (const change of limited(result.apply.filter((c) => !conflicted.has(c.path)).map((c) => `${letterOf(c)} ${c.path}`))) lines.push(`  ${change}`);
  for (const conflict of result.conflicts) lines.push(`  conflict: ${conflict.path}: ${conflict.reason}`);
  for (const problem of result.blocked) lines.push(`  ${problem.forceable ? "conflict" : "blocked"}: ${problem.path}: ${problem.reason}`);
  for (const skip of result.skipped) lines.push(`  skipped: ${skip.path}: ${skip.reason}`);
  const changes = plural(result.apply.length, "change");
  const head = isEmpty(result) ? `nothing to copy out of ${id}${result.alreadyHere ? ` (${plural(result.alreadyHere, "change")} already here)` : ""}`
    : dryRun ? `copy-out of ${id} would apply ${changes}`
      : result.applied ? `copied out of ${id}: ${changes}`
        : `copy-out of ${id} refused; nothing was written${result.blocked.some((p) => !p.forceable) ? "" : " (--force lets the sandbox's version win)"}`;
  return [head, ...lines];
}

function isEmpty(result: CopyOutResult): boolean {
  return !result.apply.length && !result.conflicts.length && !result.blocked.length;
}

function letterOf(change: TreeChange): string {
  if (!change.before) return "A";
  if (!change.after) return "D";
  return change.before.kind === change.after.kind ? "M" : "T";
}

function limited(lines: string[]): string[] {
  return lines.length <= MAX_LISTED ? lines : [...lines.slice(0, MAX_LISTED), `… and ${lines.length - MAX_LISTED} more`];
}

function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}
