import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { isRealDirectoryPath } from "../../src/sandbox/environment-blocks.ts";

test("a block layer's parent directory counts only when no component on the way is a symlink", async (t) => {
  const layer = mkdtempSync(join(tmpdir(), "cleanroom-layer-"));
  t.after(() => rmSync(layer, { recursive: true, force: true }));
  mkdirSync(join(layer, "workspace", "sub"), { recursive: true });
  // what a hostile archive could leave: an ancestor of an output as a symlink out of the layer
  symlinkSync("/", join(layer, "root"));
  symlinkSync("/etc", join(layer, "workspace", "etc"));
  assert.equal(await isRealDirectoryPath(layer, "/workspace/sub"), true);
  assert.equal(await isRealDirectoryPath(layer, "/root"), false);
  assert.equal(await isRealDirectoryPath(layer, "/root/tmp"), false, "/tmp exists on the host, through the symlink");
  assert.equal(await isRealDirectoryPath(layer, "/workspace/etc"), false);
  assert.equal(await isRealDirectoryPath(layer, "/missing"), false);
});
