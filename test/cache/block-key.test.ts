import assert from "node:assert/strict";
import { test } from "node:test";
import { blockKey, blockKeyParts, expandBlockValue, matchInputs, missReason, outputCapacityBytes, outputPath, type TreeEntry } from "../../src/cache/index.ts";
import type { CompiledBlock } from "../../src/policy/index.ts";

const oid = (n: number) => n.toString(16).padStart(40, "0");
const tree: TreeEntry[] = [
  { path: "package.json", mode: "100644", oid: oid(1) },
  { path: "package-lock.json", mode: "100644", oid: oid(2) },
  { path: "src/index.js", mode: "100644", oid: oid(3) },
  { path: "packages/a/package.json", mode: "100644", oid: oid(4) },
  { path: "packages/b/package.json", mode: "100755", oid: oid(5) },
  { path: "vendor/lib", mode: "160000", oid: oid(6) },
  { path: ".nvmrc", mode: "100644", oid: oid(7) },
];
const block: CompiledBlock = {
  name: "npm-install",
  command: ["/bin/sh", "-lc", "npm ci"],
  inputs: ["package.json", "package-lock.json"],
  outputs: { dirs: ["node_modules", "~/.npm"], files: [] },
  env: {},
};
const keyOf = (overrides: { block?: Partial<CompiledBlock>; tree?: TreeEntry[]; earlier?: string[]; imageDigest?: string } = {}) =>
  blockKeyParts({
    backend: "linux", policyHash: "sha256:p", imageDigest: overrides.imageDigest ?? "sha256:i", stage: "dependencies",
    block: { ...block, ...overrides.block }, repositoryPath: "/workspace", tree: overrides.tree ?? tree, earlier: overrides.earlier ?? [],
  });

test("inputs match files, directories, globs and submodules by path, mode and content id", () => {
  const matched = matchInputs(["package.json", "packages/*/package.json", "vendor/lib", "packages", "missing.txt"], tree);
  assert.deepEqual(matched.map((m) => [m.pattern, m.files.map(([p]) => p)]), [
    ["package.json", ["package.json"]],
    ["packages/*/package.json", ["packages/a/package.json", "packages/b/package.json"]],
    ["vendor/lib", ["vendor/lib"]],
    ["packages", ["packages/a/package.json", "packages/b/package.json"]],
    ["missing.txt", []],
  ]);
  assert.deepEqual(matched[2]!.files[0], ["vendor/lib", "160000", oid(6)]);
});

test("a source-only change keeps the key; an input, toolchain, command, earlier block or image change moves it", () => {
  const base = blockKey(keyOf());
  const sourceChanged = tree.map((e) => (e.path === "src/index.js" ? { ...e, oid: oid(99) } : e));
  assert.equal(blockKey(keyOf({ tree: sourceChanged })), base);
  const lockChanged = tree.map((e) => (e.path === "package-lock.json" ? { ...e, oid: oid(98) } : e));
  const modeChanged = tree.map((e) => (e.path === "package.json" ? { ...e, mode: "100755" } : e));
  const nvmChanged = tree.map((e) => (e.path === ".nvmrc" ? { ...e, oid: oid(97) } : e));
  const others = [
    keyOf({ tree: lockChanged }), keyOf({ tree: modeChanged }), keyOf({ tree: nvmChanged }),
    keyOf({ block: { command: ["/bin/sh", "-lc", "npm install"] } }), keyOf({ block: { env: { CI: "1" } } }),
    keyOf({ block: { outputs: { dirs: ["node_modules"], files: [] } } }), keyOf({ earlier: ["sha256:e"] }), keyOf({ imageDigest: "sha256:j" }),
  ].map(blockKey);
  assert.equal(new Set([base, ...others]).size, others.length + 1);
});

test("a miss says what changed since the block's last published run", () => {
  const lockChanged = tree.map((e) => (e.path === "package-lock.json" ? { ...e, oid: oid(98) } : e));
  assert.equal(missReason(keyOf(), undefined), "no cached outputs for this block yet");
  assert.equal(missReason(keyOf({ tree: lockChanged }), keyOf()), "inputs changed: package-lock.json");
  assert.equal(missReason(keyOf({ block: { env: { A: "1" } }, earlier: ["sha256:e"] }), keyOf()), "env changed; an earlier block changed");
  assert.equal(missReason(keyOf(), keyOf()), "the cached outputs were removed");
});

test("~, $HOME and $WORKSPACE expand only at the start of a value; relative outputs live in the repository", () => {
  const where = { home: "/root", workspace: "/workspace" };
  assert.equal(expandBlockValue("~/.npm", where), "/root/.npm");
  assert.equal(expandBlockValue("${HOME}", where), "/root");
  assert.equal(expandBlockValue("$WORKSPACE/vendor", where), "/workspace/vendor");
  assert.equal(expandBlockValue("x=$HOME", where), "x=$HOME");
  assert.equal(expandBlockValue("~user/x", where), "~user/x");
  assert.equal(outputPath("node_modules/", where), "/workspace/node_modules");
  assert.equal(outputPath("~/.cache/mise", where), "/root/.cache/mise");
  assert.equal(outputPath("/var/lib/docker", where), "/var/lib/docker");
});

test("output capacity is the floor, or the previous output plus headroom when that is larger", () => {
  const GiB = 1024 ** 3;
  assert.equal(outputCapacityBytes(16 * GiB, undefined), 16 * GiB);
  assert.equal(outputCapacityBytes(16 * GiB, 2 * GiB), 16 * GiB);
  assert.equal(outputCapacityBytes(16 * GiB, 20 * GiB), 26 * GiB);
});
