/**
 * Repository-aware sandboxes: before launch, the requested checkout is resolved to a commit (and, when the
 * creator sent no policy, cleanroom.yaml is loaded from that commit and compiled); after launch, the sandbox's
 * own git fetches the repository through the gateway's mirror under the `repository` stage and checks it out.
 */
import type { AgentClient } from "../agent-protocol/index.ts";
import type { TreeEntry } from "../cache/index.ts";
import { CleanroomError } from "../errors/index.ts";
import { compilePolicyText, POLICY_FILES, type AllowRule, type CompiledPolicy } from "../policy/index.ts";
import { failureSummary, runGuestCommand } from "./guest-command.ts";
import type { RepositoryRecord } from "./records.ts";

/** What a creator asks for. */
export interface RepositoryCheckoutInput {
  /** https URL of the repository */
  remoteUrl: string;
  /** sha (full or abbreviated), tag, branch, "latest" or "" */
  commit: string;
  /** branch whose remote-tracking ref the checkout carries, when `commit` is a sha */
  branch?: string;
}

/** The daemon's window on repositories (the gateway's Git mirrors). */
export interface RepositorySource {
  resolve(remoteUrl: string, ref: string): Promise<{ remoteUrl: string; commit: string; branch?: string }>;
  readFile(remoteUrl: string, commit: string, path: string, maxBytes: number): Promise<Buffer | undefined>;
  /** every file, symlink and submodule at the commit, for cache keys of declared inputs */
  listTree(remoteUrl: string, commit: string, maxBytes: number): Promise<TreeEntry[]>;
}

const MAX_POLICY_BYTES = 1024 * 1024;
const BOOTSTRAP_TIMEOUT_MS = 15 * 60_000;

/**
 * Resolves the checkout and settles the policy: the creator's (verified already) or the one in the commit.
 * Fails before any host resource exists when the checkout could never succeed.
 */
export async function prepareCheckout(
  input: RepositoryCheckoutInput,
  policy: { policy: CompiledPolicy; hash: string } | undefined,
  source: RepositorySource | undefined,
): Promise<{ repository: RepositoryRecord; policy: { policy: CompiledPolicy; hash: string } | undefined; warnings: string[] }> {
  if (!source) throw new CleanroomError("failed_precondition", "this daemon runs no gateway, so it cannot check out repositories");
  const resolved = await source.resolve(input.remoteUrl, input.commit);
  const warnings: string[] = [];
  const settled = policy ?? (await policyAtCommit(source, resolved.remoteUrl, resolved.commit, warnings));
  const repo = settled?.policy.repository;
  if (repo && !repo.enabled) throw new CleanroomError("failed_precondition", `the policy turns repository bootstrap off (repository.enabled: false), so ${resolved.remoteUrl} cannot be checked out`);
  const branch = resolved.branch ?? (input.branch || undefined);
  const repository: RepositoryRecord = {
    remoteUrl: resolved.remoteUrl,
    commit: resolved.commit,
    ...(branch ? { branch } : {}),
    path: repo?.path ?? "/workspace",
    remoteName: repo?.remote ?? "origin",
    submodules: repo?.submodules ?? false,
  };
  if (settled) requireRepositoryStageAllows(settled.policy, repository.remoteUrl);
  return { repository, policy: settled, warnings };
}

/** cleanroom.yaml, else .buildkite/cleanroom.yaml, at the commit; undefined when it has neither. */
async function policyAtCommit(source: RepositorySource, remoteUrl: string, commit: string, warnings: string[]) {
  const found: { name: string; text: Buffer }[] = [];
  for (const name of POLICY_FILES) {
    const text = await source.readFile(remoteUrl, commit, name, MAX_POLICY_BYTES);
    if (text) found.push({ name, text });
  }
  const chosen = found[0];
  if (!chosen) return undefined;
  if (found.length > 1) warnings.push(`both ${POLICY_FILES[0]} and ${POLICY_FILES[1]} exist at ${commit.slice(0, 12)}; using ${chosen.name} (the root file wins)`);
  const loaded = await compilePolicyText(chosen.text.toString("utf8"), `${chosen.name}@${commit.slice(0, 12)}`);
  return { policy: loaded.policy, hash: loaded.hash };
}

/** The rule that admits the repository's own host: without a policy, the checkout is all the repository stage may reach. */
export function repositoryHostRule(remoteUrl: string): AllowRule {
  const url = new URL(remoteUrl);
  return { host: url.hostname, ports: [Number(url.port || 443)] };
}

function requireRepositoryStageAllows(policy: CompiledPolicy, remoteUrl: string): void {
  const { host, ports } = repositoryHostRule(remoteUrl);
  const port = ports[0]!;
  if (policy.network.stages.repository.some((rule) => rule.host === host && rule.ports.includes(port))) return;
  throw new CleanroomError("host_not_allowed", `the checkout of ${remoteUrl} needs ${host}:${port} in repository.network.allow (or sandbox.network.allow); the policy's repository stage does not allow it`, { host, port });
}

/** Runs in the sandbox; every input arrives as an environment variable, never spliced into the script. */
const BOOTSTRAP_SCRIPT = String.raw`set -eu
command -v git >/dev/null 2>&1 || { echo "the sandbox image has no git; repository bootstrap needs it" >&2; exit 127; }
dir=$CLEANROOM_REPO_PATH remote=$CLEANROOM_REPO_REMOTE commit=$CLEANROOM_REPO_COMMIT branch=$CLEANROOM_REPO_BRANCH
mkdir -p "$dir"
cd "$dir"
if [ ! -d .git ] && [ -z "$CLEANROOM_REPO_RESTORED" ] && [ -n "$(ls -A)" ]; then echo "$dir already holds files in the image; choose another repository.path" >&2; exit 1; fi
git -c init.defaultBranch=cleanroom-unborn init -q
git remote add "$remote" "$CLEANROOM_REPO_URL" 2>/dev/null || git remote set-url "$remote" "$CLEANROOM_REPO_URL"
git fetch -q --no-tags "$remote" "+refs/heads/*:refs/remotes/$remote/*" "+refs/tags/*:refs/tags/*"
git cat-file -e "$commit^{commit}" 2>/dev/null || git fetch -q "$remote" "$commit"
if [ -n "$branch" ]; then
  tracking="refs/remotes/$remote/$branch"
  # a tracking ref moves only forward to the requested commit: a remote branch that is newer stays as it is
  if current=$(git rev-parse -q --verify "$tracking"); then
    if [ "$current" != "$commit" ] && git merge-base --is-ancestor "$current" "$commit"; then git update-ref "$tracking" "$commit"; fi
  else
    git update-ref "$tracking" "$commit"
  fi
  git checkout -q -f -B "$branch" "$commit"
  git branch -q --set-upstream-to="$remote/$branch" "$branch"
else
  git checkout -q -f --detach "$commit"
fi
if git rev-parse -q --verify "refs/remotes/$remote/HEAD" >/dev/null; then :; else git remote set-head "$remote" -a >/dev/null 2>&1 || true; fi
if [ "$CLEANROOM_REPO_SUBMODULES" = 1 ]; then git submodule -q update --init --recursive; fi
if [ -n "$CLEANROOM_REPO_OWNER" ]; then
  # restored outputs keep the owner they were published with: a chown would copy every one of their files up
  set -f; IFS='
'
  set --
  for p in $CLEANROOM_REPO_RESTORED; do set -- "$@" -path "$p" -prune -o; done
  unset IFS; set +f
  find "$dir" "$@" -exec chown -h "$CLEANROOM_REPO_OWNER" {} +
fi
`;

/**
 * Checks the repository out in the sandbox with the sandbox's own git, through the gateway (`gatewayEnv` points
 * git at it for the hosts the repository stage allows). Fails with git's own words when it cannot.
 * `restored`: block outputs already in place (cache hits) that the checkout must leave as they are.
 */
export async function bootstrapRepository(agent: AgentClient, repository: RepositoryRecord, gatewayEnv: string[], owner: string, restored: string[] = []): Promise<void> {
  const result = await runGuestCommand(agent, {
    shell: BOOTSTRAP_SCRIPT,
    env: [
      ...gatewayEnv,
      "GIT_TERMINAL_PROMPT=0",
      `CLEANROOM_REPO_PATH=${repository.path}`,
      `CLEANROOM_REPO_URL=${repository.remoteUrl}`,
      `CLEANROOM_REPO_REMOTE=${repository.remoteName}`,
      `CLEANROOM_REPO_COMMIT=${repository.commit}`,
      `CLEANROOM_REPO_BRANCH=${repository.branch ?? ""}`,
      `CLEANROOM_REPO_SUBMODULES=${repository.submodules ? 1 : 0}`,
      `CLEANROOM_REPO_OWNER=${owner === "root" || owner === "0" || owner === "0:0" ? "" : owner}`,
      `CLEANROOM_REPO_RESTORED=${restored.join("\n")}`,
    ],
  }, { timeoutMs: BOOTSTRAP_TIMEOUT_MS });
  if (result.exitCode === 0) return;
  throw new CleanroomError("runtime_launch_failed", `repository bootstrap of ${repository.remoteUrl} at ${repository.commit.slice(0, 12)} failed: ${failureSummary(result)}`);
}
