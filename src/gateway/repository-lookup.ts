/**
 * The daemon's own questions about a repository, answered from the gateway's Git mirror of it: which commit a
 * sha, tag, branch or "latest" names, and what a file holds at that commit (a sandbox's cleanroom.yaml).
 * The creator of a sandbox asks these (trusted), so no sandbox policy applies, but the upstream leg is the
 * mirror's: vetted addresses, credentials from the chain, https only.
 */
import { join } from "node:path";
import { CleanroomError } from "../errors/index.ts";
import { CommandError, runCommand } from "../host-command/index.ts";
import { isolatedGitEnv, type GitMirrors, type MirrorUpstream } from "./git-mirror.ts";
import { GatewayRefusal } from "./refusal.ts";
import { parseUpstreamHost } from "./request-path.ts";
import { REPO_SEGMENT, MAX_REPO_SEGMENTS } from "./routes/git.ts";

const GIT_TIMEOUT_MS = 30_000;
/** the resolved mirror serves the checkout that follows (launch and bootstrap take a few seconds) without refetching */
const CHECKOUT_FRESH_MS = 10_000;
const FULL_SHA = /^[0-9a-f]{40}$/;
const ABBREVIATED_SHA = /^[0-9a-f]{7,39}$/;
/** what `git check-ref-format` would accept, minus the corners no one names a branch or tag with */
const REF_NAME = /^(?!.*\.\.)(?!.*\/\/)(?!.*@\{)[A-Za-z0-9._\/-]{1,200}$/;

/** A commit of a repository, and the branch it was named by (if it was named by one). */
export interface ResolvedCommit {
  /** the canonical https URL */
  remoteUrl: string;
  commit: string;
  /** "main" for `latest` or a branch name; undefined for a sha or a tag */
  branch?: string;
}

/** Parses the https URL of a repository into the mirror's canonical upstream; anything else is invalid_argument. */
export function parseRepositoryUrl(text: string): MirrorUpstream {
  // URL parsing would quietly resolve dot segments into another repository's path
  if (text.split(/[/?#]/).some((part) => part === "." || part === ".." || /^%2e/i.test(part))) throw invalid(`${text}: dot segments are not allowed in a repository URL`);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw invalid(`${JSON.stringify(text)} is not a URL`);
  }
  if (url.protocol !== "https:") throw invalid(`${text}: only https:// repositories can be checked out (the gateway fetches them)`);
  if (url.username || url.password || url.search || url.hash) throw invalid(`${text}: a repository URL carries no credentials, query or fragment`);
  let upstream;
  try {
    upstream = parseUpstreamHost(url.port ? `${url.hostname}:${url.port}` : url.hostname);
  } catch {
    throw invalid(`${text}: "${url.host}" is not a repository host`);
  }
  const segments = url.pathname.replace(/\/+$/, "").split("/").slice(1);
  if (segments.length === 0 || segments.length > MAX_REPO_SEGMENTS || !segments.every((s) => REPO_SEGMENT.test(s))) {
    throw invalid(`${text}: a repository path is 1 to ${MAX_REPO_SEGMENTS} segments of [A-Za-z0-9._-], none starting with a dot`);
  }
  return { url: new URL(`https://${upstream.authority}/${segments.join("/")}`), ...upstream };
}

/** Answers "which commit" and "what file" from the repository's mirror, refreshing it first. */
export class RepositoryLookup {
  readonly #mirrors: GitMirrors;

  constructor(mirrors: GitMirrors) {
    this.#mirrors = mirrors;
  }

  /** Refreshes the mirror of `remoteUrl` and resolves `ref` (sha, abbreviated sha, tag, branch, "latest" or ""). */
  async resolve(remoteUrl: string, ref: string): Promise<ResolvedCommit> {
    const upstream = parseRepositoryUrl(remoteUrl);
    try {
      await this.#mirrors.refresh(upstream);
      this.#mirrors.holdFresh(upstream, CHECKOUT_FRESH_MS);
    } catch (err) {
      if (err instanceof GatewayRefusal) throw new CleanroomError(err.reasonCode === "host_not_allowed" ? "host_not_allowed" : "registry_error", `cannot fetch ${upstream.url.href}: ${err.message}`);
      throw err;
    }
    const git = (args: string[]) => this.#git(upstream, args);
    const base = { remoteUrl: upstream.url.href };
    if (ref === "" || ref === "latest") {
      const head = (await git(["symbolic-ref", "-q", "HEAD"]).catch(() => "")).trim();
      const branch = head.startsWith("refs/heads/") ? head.slice("refs/heads/".length) : undefined;
      return { ...base, commit: await this.#commitOf(upstream, "HEAD", ref || "latest"), ...(branch ? { branch } : {}) };
    }
    if (FULL_SHA.test(ref)) return { ...base, commit: await this.#commitOf(upstream, ref, ref) };
    if (!REF_NAME.test(ref) || ref.startsWith("-") || ref.startsWith("/") || ref.endsWith(".lock")) throw invalid(`--repo-commit ${JSON.stringify(ref)} is not a sha, tag or branch name`);
    if (await this.#exists(upstream, `refs/heads/${ref}`)) return { ...base, commit: await this.#commitOf(upstream, `refs/heads/${ref}`, ref), branch: ref };
    if (await this.#exists(upstream, `refs/tags/${ref}`)) return { ...base, commit: await this.#commitOf(upstream, `refs/tags/${ref}`, ref) };
    if (ABBREVIATED_SHA.test(ref)) return { ...base, commit: await this.#commitOf(upstream, ref, ref) };
    throw new CleanroomError("not_found", `${upstream.url.href} has no branch or tag named ${JSON.stringify(ref)}`);
  }

  /** The bytes of `path` at `commit` (resolved before), or undefined when the commit has no such file. */
  async readFile(remoteUrl: string, commit: string, path: string, maxBytes: number): Promise<Buffer | undefined> {
    const upstream = parseRepositoryUrl(remoteUrl);
    if (!FULL_SHA.test(commit)) throw invalid(`${commit} is not a full commit sha`);
    const object = `${commit}:${path}`;
    const type = (await this.#git(upstream, ["cat-file", "-t", object]).catch(() => "")).trim();
    if (type !== "blob") return undefined;
    const size = Number((await this.#git(upstream, ["cat-file", "-s", object])).trim());
    if (!(size <= maxBytes)) throw new CleanroomError("policy_invalid", `${path} at ${commit.slice(0, 12)} is ${size} bytes; the limit is ${maxBytes}`);
    return Buffer.from(await this.#git(upstream, ["cat-file", "blob", object]), "utf8");
  }

  /**
   * Every file, symlink and submodule of the tree at `commit` (resolved before), for cache keys of declared inputs.
   * Refuses a listing above `maxBytes` rather than keying on part of a tree.
   */
  async listTree(remoteUrl: string, commit: string, maxBytes: number): Promise<{ path: string; mode: string; oid: string }[]> {
    const upstream = parseRepositoryUrl(remoteUrl);
    if (!FULL_SHA.test(commit)) throw invalid(`${commit} is not a full commit sha`);
    const out = await this.#git(upstream, ["ls-tree", "-r", "-z", "--full-tree", commit], maxBytes + 1);
    // the runner truncates quietly: a key made from part of a tree would match trees that differ
    if (Buffer.byteLength(out) > maxBytes) {
      throw new CleanroomError("resource_exhausted", `the tree of ${upstream.url.href} at ${commit.slice(0, 12)} lists more than ${maxBytes} bytes of paths; too large to key caches on`);
    }
    const entries: { path: string; mode: string; oid: string }[] = [];
    for (const record of out.split("\0")) {
      const match = /^(\d{6}) (blob|commit) ([0-9a-f]{40,64})\t(.+)$/s.exec(record);
      if (match) entries.push({ mode: match[1]!, oid: match[3]!, path: match[4]! });
    }
    return entries;
  }

  async #commitOf(upstream: MirrorUpstream, rev: string, asked: string): Promise<string> {
    const out = await this.#git(upstream, ["rev-parse", "--verify", "--quiet", "--end-of-options", `${rev}^{commit}`]).catch(() => "");
    const commit = out.trim();
    if (!FULL_SHA.test(commit)) throw new CleanroomError("not_found", `${upstream.url.href} has no commit ${JSON.stringify(asked)}; push it first, or check the name`);
    return commit;
  }

  async #exists(upstream: MirrorUpstream, ref: string): Promise<boolean> {
    return this.#git(upstream, ["show-ref", "--verify", "--quiet", ref]).then(() => true, () => false);
  }

  async #git(upstream: MirrorUpstream, args: string[], maxOutputBytes = 2 * 1024 * 1024): Promise<string> {
    const dir = join(this.#mirrors.projectRoot, this.#mirrors.mirrorName(upstream.url));
    try {
      const { stdout } = await runCommand("git", ["--git-dir", dir, ...args], { env: isolatedGitEnv(this.#mirrors.home), timeoutMs: GIT_TIMEOUT_MS, maxOutputBytes });
      return stdout;
    } catch (err) {
      if (err instanceof CommandError) throw err;
      throw new CleanroomError("internal", `git in the mirror of ${upstream.url.href} failed: ${(err as Error).message}`);
    }
  }
}

function invalid(message: string): CleanroomError {
  return new CleanroomError("invalid_argument", message);
}
