import assert from "node:assert/strict";
import { createReadStream } from "node:fs";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test, type TestContext } from "node:test";
import { isCleanroomError } from "../../src/errors/index.ts";
import { ImageStore } from "../../src/image/index.ts";
import { run, TEST_ID_RANGE, tempDir } from "./helpers/env.ts";
import { sha256, tarOf, writeOciLayout, type ImageSpec } from "./helpers/oci-layout.ts";

const shared = tarOf([{ path: "etc/os-release", data: "ID=test\n" }]);

/** An OCI layout turned into an oci-archive by skopeo, as `skopeo copy oci:… oci-archive:…` users do. */
async function ociArchive(t: TestContext, tag: string, spec: ImageSpec): Promise<string> {
  const layout = await tempDir(t);
  await writeOciLayout(layout, tag, spec);
  const archive = join(await tempDir(t), `${tag}.tar`);
  await run("skopeo", ["copy", "--quiet", `oci:${layout}:${tag}`, `oci-archive:${archive}:${tag}`]);
  return archive;
}

async function blobCount(root: string): Promise<number> {
  return (await readdir(join(root, "blobs", "sha256"))).length;
}

test("importArchive reads a skopeo oci-archive (path or stream) and the image is usable", async (t) => {
  const archive = await ociArchive(t, "one", { layers: [shared, tarOf([{ path: "app", data: "one" }])], cmd: ["/app"] });
  const root = await tempDir(t);
  const store = new ImageStore({ root, idRange: TEST_ID_RANGE });
  const phases: string[] = [];
  const image = await store.importArchive("local/one:1", archive, { onProgress: (p) => phases.push(p.phase) });
  assert.equal(image.ref, "docker.io/local/one:1");
  assert.deepEqual(image.config.cmd, ["/app"]);
  const dirs = await store.layerDirs(image);
  assert.equal(await readFile(join(dirs[1]!, "app"), "utf8"), "one");
  assert.ok(phases.includes("unpacking") && phases.at(-1) === "done");
  assert.equal((await store.resolveLocal("local/one:1"))?.digest, image.digest);

  const viaStream = await new ImageStore({ root: await tempDir(t), idRange: TEST_ID_RANGE }).importArchive("local/one:2", createReadStream(archive));
  assert.equal(viaStream.digest, image.digest);
});

test("importArchive reads a docker save tar (manifest.json + layer.tar)", async (t) => {
  const dir = await tempDir(t);
  const layer = tarOf([{ path: "hello", data: "from docker" }]);
  await mkdir(join(dir, "abc"));
  await writeFile(join(dir, "abc", "layer.tar"), layer);
  const config = JSON.stringify({ architecture: "amd64", os: "linux", config: { Cmd: ["/hello"] }, rootfs: { type: "layers", diff_ids: [sha256(layer)] } });
  await writeFile(join(dir, "cfg.json"), config);
  await writeFile(join(dir, "manifest.json"), JSON.stringify([{ Config: "cfg.json", RepoTags: ["hello:latest"], Layers: ["abc/layer.tar"] }]));
  await writeFile(join(dir, "repositories"), "{}");
  const archive = join(await tempDir(t), "save.tar");
  await run("tar", ["-C", dir, "-cf", archive, "manifest.json", "cfg.json", "abc", "repositories"]);
  const store = new ImageStore({ root: await tempDir(t), idRange: TEST_ID_RANGE });
  const image = await store.importArchive("hello:latest", archive);
  assert.equal(image.configDigest, sha256(config));
  assert.equal(image.layers[0]!.diffId, sha256(layer));
  assert.equal(await readFile(join((await store.layerDirs(image))[0]!, "hello"), "utf8"), "from docker");
});

test("an archive that is neither OCI layout nor docker save is image_invalid", async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, "readme"), "hi");
  const archive = join(dir, "x.tar");
  await run("tar", ["-C", dir, "-cf", archive, "readme"]);
  const root = await tempDir(t);
  const store = new ImageStore({ root, idRange: TEST_ID_RANGE });
  await assert.rejects(store.importArchive("x:1", archive), (e) => isCleanroomError(e, "image_invalid"));
  assert.equal(await blobCount(root), 0);
});

test("remove() drops the tag and garbage-collects blobs and layers no image references", async (t) => {
  const one = await ociArchive(t, "one", { layers: [shared, tarOf([{ path: "app", data: "one" }])] });
  const two = await ociArchive(t, "two", { layers: [shared, tarOf([{ path: "app", data: "two" }])] });
  const root = await tempDir(t);
  const store = new ImageStore({ root, idRange: TEST_ID_RANGE });
  const a = await store.importArchive("local/app:one", one);
  const b = await store.importArchive("local/app:two", two);
  // shared layer + 2 own layers + 2 configs + 2 manifests
  assert.equal(await blobCount(root), 7);
  assert.equal((await readdir(join(root, "layers"))).length, 3);
  const sharedDir = (await store.layerDirs(a))[0]!;
  assert.equal((await store.layerDirs(b))[0], sharedDir, "identical layers are unpacked once");

  await store.remove("local/app:one");
  assert.equal(await store.resolveLocal("local/app:one"), undefined);
  assert.equal(await blobCount(root), 4);
  assert.deepEqual((await readdir(join(root, "layers"))).sort(), (await store.layerDirs(b)).map((d) => d.split("/").pop()!).sort());
  assert.equal(await readFile(join(sharedDir, "etc/os-release"), "utf8"), "ID=test\n", "shared layer kept");

  await store.remove(b.digest);
  assert.deepEqual(await store.list(), []);
  assert.equal(await blobCount(root), 0);
  assert.deepEqual(await readdir(join(root, "layers")), []);
  await assert.rejects(store.remove("local/app:two"), (e) => isCleanroomError(e, "image_not_found"));
});

test("two stores sharing a root unpack the same layer concurrently without conflict", async (t) => {
  const archive = await ociArchive(t, "c", { layers: [tarOf(Array.from({ length: 300 }, (_, i) => ({ path: `f/${i}`, data: `file ${i}` })))] });
  const root = await tempDir(t);
  const s1 = new ImageStore({ root, idRange: TEST_ID_RANGE });
  const s2 = new ImageStore({ root, idRange: TEST_ID_RANGE });
  const [x, y] = await Promise.all([s1.importArchive("local/c:1", archive), s2.importArchive("local/c:2", archive)]);
  assert.equal(x.digest, y.digest);
  const [d1] = await s1.layerDirs(x);
  assert.equal((await readdir(join(d1!, "f"))).length, 300);
  assert.deepEqual((await readdir(join(root, "layers"))).filter((n) => n.startsWith(".")), [], "no temp dirs left");
  assert.equal((await s2.list()).length, 2);
});
