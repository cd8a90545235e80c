// Dependency blocks end to end on a real Node project (test/fixtures/node-project) served by the test Git server:
// `npm ci` runs through the gateway against the test npm registry on a miss, its outputs become a cache layer, and
// later sandboxes of an unchanged lockfile get node_modules back without npm running at all.
import assert from "node:assert/strict";
import { before, test } from "node:test";
import { suiteCleanup } from "../fixtures/cleanup.ts";
import { runCli } from "../fixtures/daemon.ts";
import { bareRepository, pushCommit, startGatewayWorld, type GatewayWorld } from "../fixtures/gateway-world.ts";
import { ensureNodeImage } from "../fixtures/node-image.ts";
import { bumpedLockfile, nodeProjectFiles, NODE_PROJECT_BUMP, NODE_PROJECT_PACKAGES, NODE_PROJECT_TEST_OUTPUT } from "../fixtures/node-project.ts";
import { testCertificates } from "../fixtures/tls.ts";
import { startTestNpmRegistry, type TestNpmRegistry } from "../gateway/npm-registry.ts";

const suite = suiteCleanup();
const certs = testCertificates(["git.test", "npm.test"]);
suite.after(() => certs.remove());
let world: GatewayWorld;
let npm: TestNpmRegistry;
let image: string;

before(async () => {
  npm = await startTestNpmRegistry(suite.after, { certs, host: "npm.test", packages: NODE_PROJECT_PACKAGES });
  world = await startGatewayWorld(suite, {
    hosts: ["git.test"],
    gitHosts: ["git.test"],
    certs,
    records: { "npm.test": "127.0.0.1" },
    gatewayConfig: ["  npm:", `    registry: ${npm.authority}`].join("\n"),
  });
  image = await world.pinned(await ensureNodeImage(world.daemon));
});

interface CacheEvent {
  type: string;
  reason_code: string;
  attributes: Record<string, string>;
}

async function create(repo: string): Promise<{ id: string; code: number; stderr: string }> {
  const result = await runCli(["create", "--repo-url", `https://git.test/${repo}`], world.daemon.env, undefined, 300_000);
  const id = result.stdout.trim();
  if (result.code === 0) suite.after(() => world.daemon.cli(["sandbox", "rm", id]));
  return { id, code: result.code, stderr: result.stderr };
}

const sh = (id: string, script: string) => world.daemon.cli(["exec", "--in", id, "--", "sh", "-c", script], { timeoutMs: 180_000 });

async function events(id: string): Promise<CacheEvent[]> {
  return JSON.parse((await world.daemon.cli(["sandbox", "inspect", id, "--json"])).stdout).events as CacheEvent[];
}

const blockResults = async (id: string) => (await events(id)).filter((e) => e.type === "cache_block").map((e) => e.attributes.result);

test("npm ci runs on a miss; a source-only commit restores node_modules without running it; a lockfile change runs it again", async () => {
  const bare = bareRepository(world.root, "git.test", "org/app.git", [nodeProjectFiles({ image, npmAuthority: npm.authority })]);

  const first = await create("org/app.git");
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stderr, /dependencies npm-install: miss \(no cached outputs for this block yet\)/);
  assert.match(first.stderr, /dependencies npm-install: published/);
  assert.deepEqual(await blockResults(first.id), ["miss", "published"]);
  const tested = await world.daemon.cli(["exec", "--in", first.id, "--", "npm", "test", "--silent"]);
  assert.equal(tested.code, 0, tested.stderr);
  assert.equal(tested.stdout.trim(), NODE_PROJECT_TEST_OUTPUT);
  assert.ok(npm.requests.some((r) => r.url.endsWith(".tgz")), "the miss installed from the registry");

  const sourceChange = `${nodeProjectFiles({ image, npmAuthority: npm.authority })["index.js"]}// a source-only change\n`;
  pushCommit(bare, { "index.js": sourceChange }, "a source-only change");
  const second = await create("org/app.git");
  assert.equal(second.code, 0, second.stderr);
  assert.match(second.stderr, /dependencies npm-install: restored/);
  assert.deepEqual(await blockResults(second.id), ["hit"]);
  const npmRequests = (await events(second.id)).filter((e) => e.type === "gateway_request" && e.attributes.service === "npm");
  assert.deepEqual(npmRequests, [], "npm never ran: not one npm request reached the gateway");
  const again = await sh(second.id, "npm test --silent && tail -n 1 index.js && stat -c %a /root && test -d /root/.npm/_cacache && echo npm-cache-restored");
  assert.equal(again.code, 0, again.stderr);
  assert.deepEqual(again.stdout.trim().split("\n"), [NODE_PROJECT_TEST_OUTPUT, "// a source-only change", "700", "npm-cache-restored"]);

  // a snapshot of a sandbox whose node_modules is a cache layer stacks that layer again
  const snapshot = await world.daemon.cli(["snapshot", "create", second.id]);
  assert.equal(snapshot.code, 0, snapshot.stderr);
  const fromSnapshot = await world.daemon.cli(["exec", "--from", snapshot.stdout.trim(), "--", "npm", "test", "--silent"], { timeoutMs: 180_000 });
  assert.equal(fromSnapshot.code, 0, fromSnapshot.stderr);
  assert.equal(fromSnapshot.stdout.trim(), NODE_PROJECT_TEST_OUTPUT);

  pushCommit(bare, bumpedLockfile(), "bump cr-words");
  const third = await create("org/app.git");
  assert.equal(third.code, 0, third.stderr);
  assert.match(third.stderr, /dependencies npm-install: miss \(inputs changed: package-lock\.json, package\.json\)/);
  const version = await sh(third.id, "node -p 'require(\"cr-words\").version'");
  assert.equal(version.stdout.trim(), NODE_PROJECT_BUMP.version, version.stderr);
});

test("a block that writes outside its outputs warns, publishes nothing, and runs again next time", async () => {
  const blocks = `  dependencies:
    - name: leaky
      command: mkdir -p out && echo built > out/result && echo leaked > /etc/leaked-by-block
      outputs:
        dirs: [out]
`;
  bareRepository(world.root, "git.test", "org/leaky.git", [nodeProjectFiles({ image, npmAuthority: npm.authority, blocks })]);
  const first = await create("org/leaky.git");
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stderr, /dependencies leaky: not cached \(wrote 1 path\(s\) outside its declared outputs: \/etc\/leaked-by-block/);
  const escaped = (await events(first.id)).find((e) => e.type === "cache_block" && e.attributes.result === "escaped");
  assert.equal(escaped?.reason_code, "escaped_writes");
  const inSandbox = await sh(first.id, "cat out/result /etc/leaked-by-block");
  assert.equal(inSandbox.stdout, "built\nleaked\n", "the block's effects stay in its own sandbox");

  const second = await create("org/leaky.git");
  assert.equal(second.code, 0, second.stderr);
  assert.deepEqual(await blockResults(second.id), ["miss", "escaped"]);
});

test("service blocks publish and restore; sandbox.run.before runs before every execution; a failing block fails the creation", async () => {
  const blocks = `  dependencies:
    - name: broken
      command: echo "cannot build this" >&2; exit 3
      outputs:
        dirs: [out]
`;
  const services = `  services:
    - name: database
      command: mkdir -p state && date +%s%N > state/db
      outputs:
        dirs: [state]
`;
  bareRepository(world.root, "git.test", "org/plain.git", [nodeProjectFiles({ image, npmAuthority: npm.authority, blocks: services })]);
  const sandbox = await create("org/plain.git");
  assert.equal(sandbox.code, 0, sandbox.stderr);
  assert.match(sandbox.stderr, /services database: published/);
  const restored = await create("org/plain.git");
  assert.match(restored.stderr, /services database: restored/);
  for (const expected of ["1", "2"]) {
    const counted = await sh(sandbox.id, "wc -l < /tmp/run-before.log");
    assert.equal(counted.stdout.trim(), expected, counted.stderr);
  }
  const sameState = await Promise.all([sandbox.id, restored.id].map((id) => sh(id, "cat state/db")));
  assert.equal(sameState[1]!.stdout, sameState[0]!.stdout, "the service block's state comes back as it was published");

  bareRepository(world.root, "git.test", "org/broken.git", [nodeProjectFiles({ image, npmAuthority: npm.authority, blocks })]);
  const broken = await create("org/broken.git");
  assert.notEqual(broken.code, 0);
  assert.match(broken.stderr, /dependencies block broken failed: cannot build this/);
});
