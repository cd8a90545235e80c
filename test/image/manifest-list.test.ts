import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { isCleanroomError } from "../../src/errors/index.ts";
import { ImageStore } from "../../src/image/index.ts";
import { startRegistry } from "../fixtures/registry.ts";
import { skopeoPush, TEST_ID_RANGE, tempDir } from "./helpers/env.ts";
import { tarOf, writeMultiPlatformLayout } from "./helpers/oci-layout.ts";

test("a manifest list is resolved to the requested platform (default linux/amd64)", async (t) => {
  const registry = await startRegistry(t);
  const layout = await tempDir(t);
  const { indexDigest, images } = await writeMultiPlatformLayout(layout, "multi", [
    { layers: [tarOf([{ path: "arch", data: "amd64" }])], architecture: "amd64" },
    { layers: [tarOf([{ path: "arch", data: "arm64" }])], architecture: "arm64", variant: "v8" },
  ]);
  await skopeoPush(layout, "multi", `${registry.host}/multi/app:1`, { all: true });
  const ref = `${registry.host}/multi/app:1`;

  const amdStore = new ImageStore({ root: await tempDir(t), idRange: TEST_ID_RANGE });
  const amd = await amdStore.pull(ref);
  assert.equal(amd.platform, "linux/amd64");
  assert.equal(amd.digest, images[0]!.manifestDigest);
  assert.equal(await readFile(join((await amdStore.layerDirs(amd))[0]!, "arch"), "utf8"), "amd64");
  assert.equal((await amdStore.resolveLocal(indexDigest))?.digest, amd.digest, "the index digest resolves to the pulled platform image");
  assert.equal((await amdStore.resolveLocal(`${registry.host}/multi/app@${indexDigest}`))?.digest, amd.digest);

  const armStore = new ImageStore({ root: await tempDir(t), idRange: TEST_ID_RANGE });
  const arm = await armStore.pull(ref, { platform: "linux/arm64" });
  assert.equal(arm.platform, "linux/arm64/v8");
  assert.equal(arm.digest, images[1]!.manifestDigest);
  assert.equal(await readFile(join((await armStore.layerDirs(arm))[0]!, "arch"), "utf8"), "arm64");

  // pinned by the index digest, as a policy would pin it
  const pinned = await new ImageStore({ root: await tempDir(t), idRange: TEST_ID_RANGE }).pull(`${registry.host}/multi/app@${indexDigest}`);
  assert.equal(pinned.digest, images[0]!.manifestDigest);

  await assert.rejects(
    new ImageStore({ root: await tempDir(t), idRange: TEST_ID_RANGE }).pull(ref, { platform: "linux/s390x" }),
    (e) => isCleanroomError(e, "image_not_found") && /linux\/amd64/.test(e.message) && /linux\/arm64/.test(e.message),
  );
  await assert.rejects(amdStore.pull(ref, { platform: "bogus" }), (e) => isCleanroomError(e, "invalid_argument"));
});
