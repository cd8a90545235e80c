// Keeps the node-project fixture honest on the host, without a sandbox: its checked-in lockfiles name exactly the
// tarballs the test registry packs, `npm ci` installs them (straight from the registry, and through a gateway
// that resolves npm.test as a sandbox's does), its `npm test` passes, and its cleanroom.yaml compiles.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { compilePolicyText } from "../../src/policy/index.ts";
import { suiteCleanup } from "../fixtures/cleanup.ts";
import { startTestGateway } from "../fixtures/gateway.ts";
import { bumpedLockfile, NODE_PROJECT_BUMP, NODE_PROJECT_PACKAGES, NODE_PROJECT_TEST_OUTPUT, nodeProjectFiles } from "../fixtures/node-project.ts";
import { testCertificates } from "../fixtures/tls.ts";
import { runNpm, startTestNpmRegistry } from "./npm-registry.ts";

const suite = suiteCleanup();
// npm.test for the gateway (its resolver maps it to loopback); 127.0.0.1 so this host's npm can dial it directly
const certs = testCertificates(["npm.test", "127.0.0.1"]);
suite.after(() => certs.remove());
const registry = await startTestNpmRegistry(suite.after, { certs, host: "npm.test", packages: NODE_PROJECT_PACKAGES });
const work = mkdtempSync(join(tmpdir(), "cleanroom-node-project-"));
suite.after(() => rmSync(work, { recursive: true, force: true }));
const IMAGE = `cleanroom.local/node-npm@sha256:${"0".repeat(64)}`;

let projects = 0;
/** The fixture (optionally with other files over it) in a new directory with its own HOME and npm cache. */
function checkout(overrides: Record<string, string> = {}): string {
  const dir = join(work, `project-${++projects}`);
  const files = { ...nodeProjectFiles({ image: IMAGE, npmAuthority: registry.authority }), ...overrides };
  mkdirSync(dir);
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content);
  return dir;
}

const npm = (dir: string, args: string[]) => runNpm([...args, `--cache=${join(dir, ".npm-cache")}`], { cwd: dir, home: join(dir, ".home"), timeoutMs: 45_000 });
/** `npm ci` straight from the registry: the packuments name npm.test, so tarball URLs are pointed back at 127.0.0.1 */
const directCi = (dir: string) =>
  npm(dir, ["ci", "--no-audit", "--no-fund", "--fetch-retries=0", `--registry=https://127.0.0.1:${registry.port}/`, "--replace-registry-host=always", `--cafile=${certs.caFile}`]);
const installedVersion = (dir: string, name: string) => (JSON.parse(readFileSync(join(dir, "node_modules", name, "package.json"), "utf8")) as { version: string }).version;

/** `<name without scope>-<version>.tgz` of a lockfile entry at `node_modules/<name>` */
const tarballOf = (path: string, version: string | undefined) => `${path.replace(/^.*node_modules\/(@[^/]+\/)?/, "")}-${version}.tgz`;

test("the checked-in lockfiles have no resolved URLs and pin the integrity the test registry packs", () => {
  const lockfiles = {
    "package-lock.json": nodeProjectFiles({ image: IMAGE, npmAuthority: registry.authority })["package-lock.json"]!,
    "bumped/package-lock.json": bumpedLockfile()["package-lock.json"]!,
  };
  for (const [which, lock] of Object.entries(lockfiles)) {
    const parsed = JSON.parse(lock) as { lockfileVersion: number; packages: Record<string, { version?: string; integrity?: string; resolved?: string }> };
    assert.equal(parsed.lockfileVersion, 3);
    for (const [path, entry] of Object.entries(parsed.packages)) {
      if (!path) continue;
      assert.equal(entry.resolved, undefined, `${which}: ${path} has a resolved URL`);
      assert.equal(entry.integrity, registry.tarball(tarballOf(path, entry.version)).integrity,
        `${which}: ${path}@${entry.version} no longer matches what npm pack makes; regenerate with npx node test/fixtures/node-project-lockfile.ts`);
    }
  }
});

test("npm ci installs the locked versions (not the newer cr-words) and npm test passes", async () => {
  const dir = checkout();
  const ci = await directCi(dir);
  assert.equal(ci.code, 0, ci.stderr);
  assert.equal(installedVersion(dir, "cr-words"), "1.1.0");
  assert.equal(installedVersion(dir, "@cr/greet"), "1.0.0");
  const tested = await npm(dir, ["test"]);
  assert.equal(tested.code, 0, tested.stderr);
  assert.ok(tested.stdout.includes(NODE_PROJECT_TEST_OUTPUT), tested.stdout);
});

test("npm ci of the bumped lockfile installs the bumped cr-words and npm test still passes", async () => {
  const dir = checkout(bumpedLockfile());
  const ci = await directCi(dir);
  assert.equal(ci.code, 0, ci.stderr);
  assert.equal(installedVersion(dir, NODE_PROJECT_BUMP.name), NODE_PROJECT_BUMP.version);
  const tested = await npm(dir, ["test"]);
  assert.equal(tested.code, 0, tested.stderr);
  assert.ok(tested.stdout.includes(NODE_PROJECT_TEST_OUTPUT), tested.stdout);
});

test("npm ci through a gateway that resolves npm.test fetches every tarball through its npm route", async () => {
  const gw = await startTestGateway(suite.after, {
    rules: [{ host: "npm.test", ports: [registry.port] }],
    hosts: { "npm.test": "127.0.0.1" },
    settings: { upstreamCaFile: certs.caFile },
    publicHost: "127.0.0.1",
  });
  const dir = checkout();
  const ci = await npm(dir, ["ci", "--no-audit", "--no-fund", "--fetch-retries=0", `--registry=${gw.base}/npm/${registry.authority}/`]);
  assert.equal(ci.code, 0, ci.stderr);
  const tarballs = gw.audits.filter((a) => a.path.endsWith(".tgz")).map((a) => [a.service, a.action, a.path.replace(/^.*\//, "")]);
  assert.deepEqual(tarballs.sort(), [["npm", "allow", "cr-words-1.1.0.tgz"], ["npm", "allow", "greet-1.0.0.tgz"]]);
  const tested = await npm(dir, ["test"]);
  assert.ok(tested.stdout.includes(NODE_PROJECT_TEST_OUTPUT), tested.stdout);
});

test("the fixture's cleanroom.yaml compiles to one npm-install block; blocks replaces it", async () => {
  const files = nodeProjectFiles({ image: IMAGE, npmAuthority: registry.authority });
  const { policy } = await compilePolicyText(files["cleanroom.yaml"]!, "cleanroom.yaml");
  assert.deepEqual(policy.dependencies.blocks, [{
    name: "npm-install",
    command: ["/bin/sh", "-lc", "npm ci --no-audit --no-fund --loglevel=error"],
    inputs: ["package.json", "package-lock.json"],
    outputs: { dirs: ["node_modules", "~/.npm"], files: [] },
    env: {},
  }]);
  assert.deepEqual(policy.network.stages.dependencies, [{ host: "git.test", ports: [443] }, { host: "npm.test", ports: [registry.port] }]);
  assert.equal(policy.run.before, "echo run-before >> /tmp/run-before.log");
  const replaced = nodeProjectFiles({ image: IMAGE, npmAuthority: registry.authority, blocks: "  dependencies:\n    - name: other\n      command: [echo, other]" });
  assert.deepEqual((await compilePolicyText(replaced["cleanroom.yaml"]!, "cleanroom.yaml")).policy.dependencies.blocks.map((b) => b.name), ["other"]);
  const none = nodeProjectFiles({ image: IMAGE, npmAuthority: registry.authority, blocks: "" });
  assert.deepEqual((await compilePolicyText(none["cleanroom.yaml"]!, "cleanroom.yaml")).policy.dependencies.blocks, []);
});
