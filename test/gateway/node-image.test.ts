import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { before, test } from "node:test";
import { suiteCleanup } from "../fixtures/cleanup.ts";
import { repoRoot, startTestDaemon, type TestDaemon } from "../fixtures/daemon.ts";
import { ensureNodeImage } from "../fixtures/node-image.ts";

const suite = suiteCleanup();
let daemon: TestDaemon;
let ref: string;

before(async () => {
  daemon = await startTestDaemon(suite);
  ref = await ensureNodeImage(daemon);
});

test("a sandbox from the Node image runs the repo's Node and its self-contained npm", async () => {
  const expectedNode = execFileSync(join(repoRoot, "node_modules", "node", "bin", "node"), ["--version"], { encoding: "utf8" }).trim();
  const expectedNpm = (JSON.parse(readFileSync(join(repoRoot, "node_modules", "npm", "package.json"), "utf8")) as { version: string }).version;
  const node = await daemon.cli(["exec", "--image", ref, "--", "node", "--version"]);
  assert.equal(node.code, 0, node.stderr);
  assert.equal(node.stdout.trim(), expectedNode);
  const npm = await daemon.cli(["exec", "--image", ref, "--", "npm", "--version"]);
  assert.equal(npm.code, 0, npm.stderr);
  assert.equal(npm.stdout.trim(), expectedNpm);
});

test("asking for the Node image again finds it in the image store instead of building it again", async () => {
  const digestOf = async () => {
    const listed = JSON.parse((await daemon.cli(["image", "ls", "--json"])).stdout) as { ref: string; digest: string }[];
    return listed.find((image) => image.ref === ref)?.digest;
  };
  const built = await digestOf();
  assert.equal(await ensureNodeImage(daemon), ref);
  // a rebuild would carry a new history timestamp, hence a new config and manifest digest
  assert.equal(await digestOf(), built);
});
