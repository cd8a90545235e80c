// Repository-aware sandboxes end to end: a real Git server (smart HTTP over HTTPS) in a test namespace, the
// daemon's gateway mirror, real runc sandboxes whose own git checks the repository out under the repository stage.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { before, test } from "node:test";
import { suiteCleanup } from "../fixtures/cleanup.ts";
import { runCli, type CliResult } from "../fixtures/daemon.ts";
import { bareRepository, startGatewayWorld, type GatewayWorld } from "../fixtures/gateway-world.ts";

const suite = suiteCleanup();
const REMOTE = "https://git.test/org/app.git";
let world: GatewayWorld;
let bare: string;
let firstCommit: string;

const policy = (lines: string[]) => ["version: 1", "sandbox:", "  image:", `    ref: ${world.baseImage}`, ...lines, ""].join("\n");
const allowGitAndFiles = () => policy(["  network:", "    allow:", "      - git.test:443", "      - files.test:443"]);

before(async () => {
  world = await startGatewayWorld(suite, { hosts: ["git.test", "files.test"], gitHosts: ["git.test"] });
  bare = bareRepository(world.root, "git.test", "org/app.git", [{ "README.md": "first\n", "cleanroom.yaml": allowGitAndFiles() }]);
  firstCommit = git(bare, ["rev-parse", "HEAD"]);
  commitTo(bare, { "README.md": "second\n" }, "second", { tag: "v2" });
  commitTo(bare, { "README.md": "third\n" }, "third");
});

function git(dir: string, args: string[]): string {
  const env = { ...process.env, GIT_AUTHOR_NAME: "t", GIT_AUTHOR_EMAIL: "t@test", GIT_COMMITTER_NAME: "t", GIT_COMMITTER_EMAIL: "t@test" };
  return execFileSync("git", ["-C", dir, ...args], { encoding: "utf8", env, stdio: ["ignore", "pipe", "pipe"] }).trim();
}

/** Commits `files` on `branch` of the bare repository (optionally tagging it). */
function commitTo(bareDir: string, files: Record<string, string>, message: string, opts: { tag?: string; branch?: string } = {}): string {
  const work = mkdtempSync(join(tmpdir(), "cleanroom-repo-test-"));
  try {
    execFileSync("git", ["clone", "-q", bareDir, work], { stdio: "ignore" });
    if (opts.branch) git(work, ["checkout", "-q", "-B", opts.branch]);
    for (const [name, content] of Object.entries(files)) writeFileSync(join(work, name), content);
    git(work, ["add", "-A"]);
    git(work, ["commit", "-q", "-m", message]);
    if (opts.tag) git(work, ["tag", opts.tag]);
    git(work, ["push", "-q", "origin", `HEAD:${opts.branch ?? "main"}`, ...(opts.tag ? [opts.tag] : [])]);
    return git(work, ["rev-parse", "HEAD"]);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** A developer's clone whose origin is the upstream's https URL (as if cloned from it). */
function localClone(bareDir = bare, remote = REMOTE): string {
  const dir = mkdtempSync(join(world.root, "..", "clone-"));
  execFileSync("git", ["clone", "-q", bareDir, dir], { stdio: "ignore" });
  git(dir, ["remote", "set-url", "origin", remote]);
  return dir;
}

async function create(args: string[], cwd?: string): Promise<{ id: string; result: CliResult }> {
  const result = await runCli(["create", ...args], world.daemon.env, undefined, 120_000, cwd);
  const id = result.stdout.trim();
  if (result.code === 0) suite.after(() => world.daemon.cli(["sandbox", "rm", id]));
  return { id, result };
}

function sh(id: string, script: string) {
  return world.daemon.cli(["exec", "--in", id, "--", "sh", "-c", script]);
}

async function inspect(id: string): Promise<{ policy_hash: string; repository?: { commit: string; branch: string; path: string } }> {
  return JSON.parse((await world.daemon.cli(["sandbox", "inspect", id, "--json"])).stdout);
}

test("create in a checkout puts the repository at /workspace at HEAD, with tracking refs that match", async () => {
  const clone = localClone();
  const head = git(clone, ["rev-parse", "HEAD"]);
  const { id, result } = await create([], clone);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stderr, "");
  const res = await sh(id, "cd /workspace && git rev-parse HEAD && git status -sb && cat README.md && git config remote.origin.url");
  assert.equal(res.code, 0, res.stderr);
  assert.equal(res.stdout, `${head}\n## main...origin/main\nthird\n${REMOTE}\n`);
  assert.deepEqual((await inspect(id)).repository, { remote_url: REMOTE, commit: head, branch: "main", path: "/workspace" });
});

test("a dirty tree warns and the sandbox gets the committed HEAD; the policy comes from the commit", async () => {
  const clone = localClone();
  writeFileSync(join(clone, "README.md"), "uncommitted edit\n");
  // the working tree's policy would cut files.test; the committed one allows it
  writeFileSync(join(clone, "cleanroom.yaml"), policy(["  network:", "    allow:", "      - git.test:443"]));
  const { id, result } = await create([], clone);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stderr, /warning: the working tree has uncommitted changes; the sandbox gets the committed HEAD [0-9a-f]{12}/);
  assert.equal((await sh(id, "cat /workspace/README.md")).stdout, "third\n");

  const committed = localClone();
  const expected = JSON.parse((await world.daemon.cli(["policy", "validate", "-c", committed, "--json"])).stdout).policy_hash as string;
  assert.equal((await inspect(id)).policy_hash, expected);
});

test("--repo-url and --repo-commit check out a tag, a sha and a branch, with the policy loaded by the daemon", async () => {
  const featureCommit = commitTo(bare, { "FEATURE.md": "feature\n" }, "feature work", { branch: "feature" });
  const cases: [string, string, string][] = [
    ["v2", "second\n", "## HEAD (no branch)"],
    [firstCommit, "first\n", "## HEAD (no branch)"],
    ["feature", "third\n", "## feature...origin/feature"],
    ["latest", "third\n", "## main...origin/main"],
  ];
  const outside = mkdtempSync(join(tmpdir(), "cleanroom-not-a-checkout-"));
  suite.after(() => rmSync(outside, { recursive: true, force: true }));
  for (const [rev, readme, status] of cases) {
    const { id, result } = await create(["--repo-url", REMOTE, "--repo-commit", rev], outside);
    assert.equal(result.code, 0, `${rev}: ${result.stderr}`);
    const res = await sh(id, "cd /workspace && cat README.md && git status -sb | head -1");
    assert.equal(res.stdout, `${readme}${status}\n`, rev);
    const info = await inspect(id);
    assert.ok(info.policy_hash.startsWith("sha256:"), "the daemon compiled the commit's cleanroom.yaml");
    if (rev === "feature") assert.equal(info.repository?.commit, featureCommit);
  }
});

test("the repository stage allows the checkout; execution then has only its own egress", async () => {
  const staged = bareRepository(world.root, "git.test", "org/staged.git", [{
    "README.md": "staged\n",
    "cleanroom.yaml": policy(["  network:", "    execution:", "      allow:", "        - files.test:443"]).replace("sandbox:", "repository:\n  network:\n    allow:\n      - git.test:443\nsandbox:"),
  }]);
  const { id, result } = await create([], localClone(staged, "https://git.test/org/staged.git"));
  assert.equal(result.code, 0, result.stderr);
  assert.equal((await sh(id, "cat /workspace/README.md")).stdout, "staged\n");
  const fetch = await sh(id, "cd /workspace && git fetch -q origin 2>&1; echo exit=$?");
  assert.match(fetch.stdout, /exit=[1-9]/, "git.test is not reachable in the execution stage");
});

test("a policy whose repository stage does not allow the remote fails before launch with host_not_allowed", async () => {
  const closed = bareRepository(world.root, "git.test", "org/closed.git", [{
    "README.md": "closed\n",
    "cleanroom.yaml": policy(["  network:", "    allow:", "      - files.test:443"]),
  }]);
  const { result } = await create([], localClone(closed, "https://git.test/org/closed.git"));
  assert.notEqual(result.code, 0);
  assert.match(result.stderr, /needs git\.test:443 in repository\.network\.allow/);
});

test("submodules are checked out when repository.submodules is true; repository.enabled: false checks nothing out", async () => {
  bareRepository(world.root, "git.test", "org/lib.git", [{ "lib.txt": "library\n" }]);
  const withSubmodule = bareRepository(world.root, "git.test", "org/parent.git", [{ "README.md": "parent\n" }]);
  const work = localClone(withSubmodule, "https://git.test/org/parent.git");
  git(work, ["-c", "protocol.file.allow=always", "submodule", "add", "-q", join(world.root, "git.test", "org", "lib.git"), "lib"]);
  git(work, ["config", "-f", ".gitmodules", "submodule.lib.url", "https://git.test/org/lib.git"]);
  writeFileSync(join(work, "cleanroom.yaml"), allowGitAndFiles().replace("sandbox:", "repository:\n  submodules: true\nsandbox:"));
  git(work, ["add", "-A"]);
  git(work, ["commit", "-q", "-m", "add lib"]);
  git(work, ["push", "-q", withSubmodule, "HEAD:main"]);
  const { id, result } = await create([], work);
  assert.equal(result.code, 0, result.stderr);
  assert.equal((await sh(id, "cat /workspace/lib/lib.txt")).stdout, "library\n");

  writeFileSync(join(work, "cleanroom.yaml"), allowGitAndFiles().replace("sandbox:", "repository:\n  enabled: false\nsandbox:"));
  git(work, ["commit", "-q", "-am", "no bootstrap"]);
  const off = await create([], work);
  assert.equal(off.result.code, 0, off.result.stderr);
  assert.equal((await sh(off.id, "test -e /workspace/.git && echo present || echo absent")).stdout, "absent\n");
  assert.equal((await inspect(off.id)).repository, undefined);
});
