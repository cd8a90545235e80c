// Workspace sync end to end: a developer's clone of a repository served by a real Git server in a test namespace,
// real sandboxes holding the same repository; local edits and unpushed commits go in, sandbox edits come out, and
// nothing a sandbox puts in its tree makes copy-out write outside the checkout.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, unlinkSync, writeFileSync } from "node:fs";
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

before(async () => {
  world = await startGatewayWorld(suite, { hosts: ["git.test"], gitHosts: ["git.test"] });
  const policy = ["version: 1", "sandbox:", "  image:", `    ref: ${world.baseImage}`, "  network:", "    allow:", "      - git.test:443", ""].join("\n");
  bare = bareRepository(world.root, "git.test", "org/app.git", [{
    "README.md": "upstream\n",
    "cleanroom.yaml": policy,
    ".gitignore": "*.log\n",
    "doomed.txt": "to be deleted\n",
    "tool.sh": "echo tool\n",
  }]);
});

function git(dir: string, args: string[]): string {
  const env = { ...process.env, GIT_AUTHOR_NAME: "dev", GIT_AUTHOR_EMAIL: "dev@test", GIT_COMMITTER_NAME: "dev", GIT_COMMITTER_EMAIL: "dev@test" };
  return execFileSync("git", ["-C", dir, ...args], { encoding: "utf8", env, stdio: ["ignore", "pipe", "pipe"] }).trim();
}

/** A developer's clone whose origin is the upstream's https URL. */
function localClone(): string {
  const dir = mkdtempSync(join(world.root, "..", "dev-clone-"));
  execFileSync("git", ["clone", "-q", bare, dir], { stdio: "ignore" });
  git(dir, ["remote", "set-url", "origin", REMOTE]);
  return dir;
}

function cli(args: string[], cwd: string): Promise<CliResult> {
  return runCli(args, world.daemon.env, undefined, 180_000, cwd);
}

async function create(cwd: string, args: string[] = []): Promise<{ id: string; result: CliResult }> {
  const result = await cli(["create", ...args], cwd);
  const id = result.stdout.trim();
  if (result.code === 0) suite.after(() => world.daemon.cli(["sandbox", "rm", id]));
  return { id, result };
}

function sh(id: string, script: string) {
  return world.daemon.cli(["exec", "--in", id, "--", "sh", "-c", `cd /workspace && ${script}`]);
}

test("copy-in sends an uncommitted edit, a new file, a deletion and a local-only commit; ignored files stay home", async () => {
  const clone = localClone();
  writeFileSync(join(clone, "LOCAL.md"), "committed here, never pushed\n");
  git(clone, ["add", "LOCAL.md"]);
  git(clone, ["commit", "-q", "-m", "local only"]);
  writeFileSync(join(clone, "README.md"), "edited here\n");
  writeFileSync(join(clone, "new.txt"), "brand new\n");
  rmSync(join(clone, "doomed.txt"));
  writeFileSync(join(clone, "debug.log"), "ignored\n");

  const { id, result } = await create(clone, ["--copy-in"]);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stderr, /copied in to [a-z0-9]{12}: 1 local commit and 3 uncommitted changes/);
  assert.doesNotMatch(result.stderr, /uncommitted changes; the sandbox gets the committed HEAD/, "copy-in carries the changes, so no warning");

  const inside = await sh(id, "cat README.md new.txt LOCAL.md; test -e doomed.txt && echo doomed-present; test -e debug.log && echo log-present; git log -1 --format=%s; git status -sb | head -1");
  assert.equal(inside.code, 0, inside.stderr);
  assert.equal(inside.stdout, "edited here\nbrand new\ncommitted here, never pushed\nlocal only\n## main...origin/main [ahead 1]\n");

  // a second copy-in after deleting the new file locally removes it in the sandbox too
  rmSync(join(clone, "new.txt"));
  const dry = await cli(["workspace", "copy-in", "--dry-run", id], clone);
  assert.equal(dry.code, 0, dry.stderr);
  assert.match(dry.stdout, /would send 0 local commits and 2 uncommitted changes\n {2}M README\.md\n {2}D doomed\.txt\n/);
  assert.equal((await cli(["workspace", "copy-in", id], clone)).code, 0);
  assert.equal((await sh(id, "test -e new.txt && echo present || echo gone")).stdout, "gone\n");
});

test("copy-out applies sandbox edits, refuses a local conflict, then --force lets the sandbox win", async () => {
  const clone = localClone();
  const { id, result } = await create(clone);
  assert.equal(result.code, 0, result.stderr);
  const edited = await sh(id, "echo from sandbox > README.md && mkdir -p gen && echo generated > gen/out.txt && rm doomed.txt && chmod 755 tool.sh");
  assert.equal(edited.code, 0, edited.stderr);
  writeFileSync(join(clone, "README.md"), "my local edit\n");

  const diff = await cli(["workspace", "diff", id], clone);
  assert.equal(diff.code, 0, diff.stderr);
  assert.match(diff.stdout, /\+from sandbox/);
  assert.match(diff.stdout, /old mode 100644\nnew mode 100755/);

  const refused = await cli(["workspace", "copy-out", id], clone);
  assert.equal(refused.code, 1, refused.stdout);
  assert.match(refused.stdout, /refused; nothing was written/);
  assert.match(refused.stdout, /conflict: README\.md: changed here and in the sandbox/);
  assert.ok(!existsSync(join(clone, "gen")), "nothing is written when any change conflicts");
  assert.equal(readFileSync(join(clone, "README.md"), "utf8"), "my local edit\n");

  const forced = await cli(["workspace", "copy-out", "--force", id], clone);
  assert.equal(forced.code, 0, forced.stdout + forced.stderr);
  assert.equal(readFileSync(join(clone, "README.md"), "utf8"), "from sandbox\n");
  assert.equal(readFileSync(join(clone, "gen", "out.txt"), "utf8"), "generated\n");
  assert.ok(!existsSync(join(clone, "doomed.txt")));
  assert.equal(statSync(join(clone, "tool.sh")).mode & 0o777, 0o755);
  assert.deepEqual(git(clone, ["status", "--porcelain"]).split("\n").map((line) => line.trim()).sort(), ["?? gen/", "D doomed.txt", "M README.md", "M tool.sh"]);

  const again = await cli(["workspace", "copy-out", id], clone);
  assert.equal(again.stdout, `nothing to copy out of ${id}\n`, "the binding remembers what was copied");
});

test("exec --sync copies in, runs, and copies the command's changes back", async () => {
  const clone = localClone();
  writeFileSync(join(clone, "input.txt"), "2 3\n");
  const res = await cli(["exec", "--sync", "--", "sh", "-c", "cd /workspace && read a b < input.txt && echo $((a*b)) > product.txt"], clone);
  assert.equal(res.code, 0, res.stderr);
  assert.match(res.stderr, /copied in to [a-z0-9]{12}: 0 local commits and 1 uncommitted change/);
  assert.match(res.stderr, /copied out of [a-z0-9]{12}: 1 change/);
  assert.equal(readFileSync(join(clone, "product.txt"), "utf8"), "6\n");
  assert.equal(git(clone, ["for-each-ref", "refs/cleanroom/"]), "", "the removed sandbox leaves no binding refs in the checkout");
});

test("binding refs of terminated sandboxes are dropped by the next workspace command, others are kept", async () => {
  const clone = localClone();
  const ended = await create(clone);
  const kept = await create(clone);
  for (const { id } of [ended, kept]) assert.equal((await cli(["workspace", "copy-in", id], clone)).code, 0);
  const bound = () => git(clone, ["for-each-ref", "--format=%(refname)", "refs/cleanroom/sandboxes/"]);
  assert.match(bound(), new RegExp(`sandboxes/${ended.id}/base`));
  assert.equal((await world.daemon.cli(["sandbox", "rm", ended.id])).code, 0);
  for (let i = 0; i < 50 && !/STOPPED/.test((await world.daemon.cli(["sandbox", "inspect", ended.id])).stdout); i++) await new Promise((r) => setTimeout(r, 100));
  assert.equal((await cli(["workspace", "diff", kept.id], clone)).code, 0);
  assert.doesNotMatch(bound(), new RegExp(ended.id));
  assert.match(bound(), new RegExp(`sandboxes/${kept.id}/base`));
});

test("sandbox symlinks and hostile trees never make copy-out write outside the checkout", async () => {
  const clone = localClone();
  const outside = mkdtempSync(join(tmpdir(), "cleanroom-outside-"));
  suite.after(() => rmSync(outside, { recursive: true, force: true }));
  const { id, result } = await create(clone);
  assert.equal(result.code, 0, result.stderr);

  // symlinks come out as symlinks: their targets are neither read nor written
  assert.equal((await sh(id, "ln -s /etc/shadow shadow && ln -s ../../ up")).code, 0);
  const first = await cli(["workspace", "copy-out", id], clone);
  assert.equal(first.code, 0, first.stdout + first.stderr);
  assert.equal(readlinkSync(join(clone, "shadow")), "/etc/shadow");
  assert.equal(readlinkSync(join(clone, "up")), "../../");

  // the sandbox turns `up` into a directory: the local symlink is replaced, never followed
  assert.equal((await sh(id, "rm up && mkdir up && echo escaped > up/escape.txt")).code, 0);
  const second = await cli(["workspace", "copy-out", id], clone);
  assert.equal(second.code, 0, second.stdout + second.stderr);
  assert.ok(lstatSync(join(clone, "up")).isDirectory());
  assert.equal(readFileSync(join(clone, "up", "escape.txt"), "utf8"), "escaped\n");
  assert.ok(!existsSync(join(clone, "..", "..", "escape.txt")));

  // an ignored local symlink to a directory outside is never written through, not even with --force
  writeFileSync(join(clone, ".git", "info", "exclude"), "cache\n");
  symlinkSync(outside, join(clone, "cache"));
  assert.equal((await sh(id, "mkdir cache && echo poisoned > cache/x.txt")).code, 0);
  const blocked = await cli(["workspace", "copy-out", "--force", id], clone);
  assert.equal(blocked.code, 1);
  assert.match(blocked.stdout, /blocked: cache\/x\.txt: cache is a symlink here/);
  assert.deepEqual(readdir(outside), []);
  unlinkSync(join(clone, "cache"));
  assert.equal((await sh(id, "rm -r cache")).code, 0);

  // a sandbox whose git lies: a tree naming `..` and `.git/hooks` is skipped path by path
  const lie = [
    "blob=$(echo pwned | git hash-object -w --stdin)",
    "hooks=$(printf '100755 blob %s\\tpost-checkout\\n' $blob | git mktree)",
    "dotgit=$(printf '040000 tree %s\\thooks\\n' $hooks | git mktree)",
    "tree=$( (git ls-tree HEAD; printf '100644 blob %s\\t..\\n040000 tree %s\\t.git\\n100644 blob %s\\tfine.txt\\n' $blob $dotgit $blob) | git mktree)",
    "git -c user.name=x -c user.email=x@x commit-tree $tree -p HEAD -m lie > /tmp/lie",
    "printf '#!/bin/sh\\ncase \"$*\" in *commit-tree*) cat /tmp/lie; exit 0;; esac\\nexec /usr/bin/git \"$@\"\\n' > /usr/local/bin/git && chmod 755 /usr/local/bin/git",
  ].join(" && ");
  assert.equal((await sh(id, lie)).code, 0);
  const hostile = await cli(["workspace", "copy-out", "--force", id], clone);
  assert.match(hostile.stdout, /skipped: \.\.: unsafe path/);
  assert.match(hostile.stdout, /skipped: \.git\/hooks\/post-checkout: unsafe path: the path is inside \.git/);
  assert.ok(!existsSync(join(clone, ".git", "hooks", "post-checkout")));
  assert.equal(readFileSync(join(clone, "fine.txt"), "utf8"), "pwned\n", "the rest of the tree is still applied");
});

function readdir(dir: string): string[] {
  mkdirSync(dir, { recursive: true });
  return execFileSync("ls", ["-A", dir], { encoding: "utf8" }).split("\n").filter(Boolean);
}
