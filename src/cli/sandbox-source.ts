// What a new sandbox is made from: the repository (a checkout at a commit) and the policy that goes with it.
// Inside a Git checkout with a cleanroom.yaml, the sandbox holds the repository at the committed HEAD and the
// policy is the one in that commit; `--repo-url`/`--repo-commit` name any repository, whose policy the daemon
// loads from the commit. A directory that is no checkout keeps the plain behaviour: its policy file, no checkout.
import { resolve } from "node:path";
import { CleanroomError } from "../errors/index.ts";
import { canonicalJson, compilePolicyText, loadRepositoryPolicy, POLICY_FILES, type LoadedPolicy } from "../policy/index.ts";
import type { RepositoryCheckoutOptions } from "../sdk/index.ts";
import { checkoutState, fileAtCommit, filesAtCommit, findCheckoutRoot, httpsRemoteUrl, pushedAncestor, remoteUrl } from "../workspace/index.ts";

export interface SourceFlags {
  chdir?: string;
  repoUrl?: string;
  repoCommit?: string;
  /** local changes and unpushed commits follow the checkout (--copy-in), so neither is a problem here */
  copyIn?: boolean;
}

export interface SandboxSource {
  policy?: { json: string; hash: string };
  repository?: RepositoryCheckoutOptions;
  /** printed as `cleanroom: warning: …` */
  warnings: string[];
}

/** Decides the repository and policy of a new sandbox from the flags and the checkout around `--chdir` (or here). */
export async function sandboxSource(flags: SourceFlags): Promise<SandboxSource> {
  if (flags.repoUrl) {
    const remote = httpsRemoteUrl(flags.repoUrl);
    if ("problem" in remote) throw new CleanroomError("invalid_argument", `--repo-url: ${remote.problem}`);
    // the daemon resolves the commit and loads that commit's cleanroom.yaml
    return { repository: { remoteUrl: remote.url, commit: flags.repoCommit ?? "latest" }, warnings: [] };
  }
  const root = await findCheckoutRoot(flags.chdir ?? process.cwd());
  if (!root || (flags.chdir && !samePath(flags.chdir, root))) {
    if (flags.repoCommit) throw new CleanroomError("invalid_argument", "--repo-commit needs --repo-url, or a Git checkout to take the remote from");
    return withPolicy(await readRepositoryPolicy(flags.chdir), []);
  }
  return checkoutSource(root, flags);
}

async function checkoutSource(root: string, flags: SourceFlags): Promise<SandboxSource> {
  const warnings: string[] = [];
  const state = await checkoutState(root);
  const committed = state.commit ? await filesAtCommit(root, state.commit, POLICY_FILES) : [];
  let loaded: LoadedPolicy | undefined;
  if (committed.length && state.commit) {
    const name = committed.includes(POLICY_FILES[0]) ? POLICY_FILES[0] : POLICY_FILES[1];
    if (committed.length > 1) warnings.push(`both ${POLICY_FILES[0]} and ${POLICY_FILES[1]} are committed; using ${name} (the root file wins)`);
    loaded = await compilePolicyText(await fileAtCommit(root, state.commit, name), `${name}@${state.commit.slice(0, 12)}`);
  } else {
    loaded = await loadRepositoryPolicy(root);
    if (loaded) warnings.push(`${loaded.source} is not committed; using the working tree's copy without checking the repository out`);
  }
  // no committed policy: nothing says how to check out, so the sandbox is not repository-aware
  if (!loaded || !committed.length || !state.commit || !loaded.policy.repository.enabled) {
    if (flags.repoCommit) throw new CleanroomError("invalid_argument", "--repo-commit needs --repo-url, or a checkout whose committed cleanroom.yaml enables the repository");
    return withPolicy(loaded, warnings);
  }
  const remoteName = loaded.policy.repository.remote;
  const url = await remoteUrl(root, remoteName);
  const remote = url ? httpsRemoteUrl(url) : { problem: `the checkout has no remote "${remoteName}"` };
  if ("problem" in remote) {
    warnings.push(`not checking the repository out: ${remote.problem} (repository.remote: ${remoteName})`);
    return withPolicy(loaded, warnings);
  }
  if (state.dirty && !flags.repoCommit && !flags.copyIn) warnings.push(`the working tree has uncommitted changes; the sandbox gets the committed HEAD ${state.commit.slice(0, 12)}`);
  let commit = flags.repoCommit ?? state.commit;
  let branch = flags.repoCommit ? undefined : (trackedBranch(state.upstream, remoteName) ?? state.branch);
  if (flags.copyIn && !flags.repoCommit) {
    // the daemon can only check out what the remote has; copy-in brings the local commits on top
    const pushed = await pushedAncestor(root, state.commit, remoteName);
    if (!pushed) throw new CleanroomError("failed_precondition", `no commit of HEAD's history is on ${remoteName} yet; push once, then --copy-in sends the rest`);
    if (pushed !== state.commit) {
      commit = pushed;
      branch = trackedBranch(state.upstream, remoteName);
    }
  }
  const repository: RepositoryCheckoutOptions = { remoteUrl: remote.url, commit, ...(branch ? { branch } : {}) };
  return { ...withPolicy(loaded, warnings), repository };
}

function withPolicy(loaded: LoadedPolicy | undefined, warnings: string[]): SandboxSource {
  return {
    ...(loaded ? { policy: { json: canonicalJson(loaded.policy), hash: loaded.hash } } : {}),
    warnings: [...(loaded?.warnings ?? []), ...warnings],
  };
}

/** "origin/main" with remote "origin" → "main". */
function trackedBranch(upstream: string | undefined, remote: string): string | undefined {
  return upstream?.startsWith(`${remote}/`) ? upstream.slice(remote.length + 1) : undefined;
}

function samePath(a: string, b: string): boolean {
  return resolve(a) === resolve(b);
}

/**
 * The policy of the repository at `dir` (default: here). No policy file is fine for the current directory
 * (default image, no egress) and an error for a directory the user named or when `required`.
 */
export async function readRepositoryPolicy(dir: string | undefined, required = false): Promise<LoadedPolicy | undefined> {
  const where = dir ?? process.cwd();
  const loaded = await loadRepositoryPolicy(where);
  if (!loaded && (dir || required)) throw new CleanroomError("policy_invalid", `no cleanroom.yaml or .buildkite/cleanroom.yaml in ${where}`);
  return loaded;
}
