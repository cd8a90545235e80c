import assert from "node:assert/strict";
import { lstat, mkdir, readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { test, type TestContext } from "node:test";
import { isCleanroomError } from "../../src/errors/index.ts";
import { unpackLayerStream } from "../../src/image/layer-unpack.ts";
import { ImageStore } from "../../src/image/index.ts";
import { run, TEST_ID_RANGE, tempDir } from "./helpers/env.ts";
import { tarOf, writeOciLayout, type TarSpec } from "./helpers/oci-layout.ts";

/** A sandbox for one hostile unpack: `dest` is the layer dir, `outside` a sibling that must stay empty. */
async function arena(t: TestContext): Promise<{ dest: string; outside: string; top: string }> {
  const top = await tempDir(t);
  const dest = join(top, "layer");
  const outside = join(top, "outside");
  await mkdir(dest);
  await mkdir(outside);
  return { dest, outside, top };
}

async function unpack(dest: string, entries: TarSpec[]) {
  return unpackLayerStream(Readable.from([tarOf(entries)]), dest, TEST_ID_RANGE);
}

async function exists(p: string): Promise<boolean> {
  return lstat(p).then(() => true, () => false);
}

test("'..' paths are refused and nothing lands outside the layer", async (t) => {
  const { dest, outside, top } = await arena(t);
  const r = await unpack(dest, [
    { path: "../escape", data: "x" },
    { path: "a/../../escape2", data: "x" },
    { path: "ok", data: "fine" },
  ]);
  assert.equal(await exists(join(top, "escape")), false);
  assert.equal(await exists(join(top, "escape2")), false);
  assert.deepEqual(await readdir(outside), []);
  assert.equal(await readFile(join(dest, "ok"), "utf8"), "fine");
  assert.equal(r.skipped.length, 2);
});

test("absolute paths are confined to the layer, never written at the host path", async (t) => {
  const { dest } = await arena(t);
  const marker = `cleanroom-abs-${process.pid}-${Date.now()}`;
  await unpack(dest, [{ path: `/tmp/${marker}`, data: "confined" }]);
  assert.equal(await exists(`/tmp/${marker}`), false);
  assert.equal(await readFile(join(dest, "tmp", marker), "utf8"), "confined");
});

test("a symlink to a host directory is created as a symlink and never written through", async (t) => {
  const { dest, outside } = await arena(t);
  const r = await unpack(dest, [
    { path: "evil", type: "SymbolicLink", linkpath: outside },
    { path: "evil/pwned", data: "x" },
    { path: "evil/sub/", type: "Directory" },
    { path: "rel", type: "SymbolicLink", linkpath: "../outside" },
    { path: "rel/pwned2", data: "x" },
    { path: "tmplink", type: "SymbolicLink", linkpath: "/tmp" },
    { path: "tmplink/.wh.something" },
    { path: "tmplink/.wh..wh..opq" },
  ]);
  assert.deepEqual(await readdir(outside), [], "nothing written through the symlinks");
  assert.ok((await lstat(join(dest, "evil"))).isSymbolicLink());
  assert.equal(r.skipped.length, 5);
  assert.equal(await exists("/tmp/something"), false);
});

test("a directory replaced by a symlink later in the layer is not written through", async (t) => {
  const { dest, outside } = await arena(t);
  const r = await unpack(dest, [
    { path: "d/", type: "Directory" },
    { path: "d/first", data: "1" },
    { path: "d", type: "SymbolicLink", linkpath: outside },
    { path: "d/second", data: "2" },
  ]);
  assert.deepEqual(await readdir(outside), []);
  assert.ok((await lstat(join(dest, "d"))).isSymbolicLink());
  assert.equal(r.skipped.length, 1);
});

test("a file replacing a symlink replaces the link itself, not its target", async (t) => {
  const { dest, outside } = await arena(t);
  const victim = join(outside, "victim");
  await unpack(dest, [
    { path: "x", type: "SymbolicLink", linkpath: victim },
    { path: "x", data: "replaced" },
  ]);
  assert.equal(await exists(victim), false);
  assert.ok((await lstat(join(dest, "x"))).isFile());
});

test("hardlinks to host files or to anything not extracted earlier in the layer are skipped", async (t) => {
  const { dest } = await arena(t);
  const before = await stat("/etc/passwd");
  const r = await unpack(dest, [
    { path: "hl", type: "Link", linkpath: "/etc/passwd" },
    { path: "hl2", type: "Link", linkpath: "../../../../etc/passwd" },
    { path: "s", type: "SymbolicLink", linkpath: "/etc/passwd" },
    { path: "hl3", type: "Link", linkpath: "s" },
    { path: "real", data: "r" },
    { path: "hl4", type: "Link", linkpath: "real" },
  ]);
  assert.equal((await stat("/etc/passwd")).nlink, before.nlink, "no new link to /etc/passwd");
  for (const p of ["hl", "hl2", "hl3"]) assert.equal(await exists(join(dest, p)), false, p);
  assert.equal((await lstat(join(dest, "hl4"))).ino, (await lstat(join(dest, "real"))).ino);
  assert.equal(r.skipped.length, 3);
});

test("device nodes are dropped, fifos kept", async (t) => {
  const { dest } = await arena(t);
  const r = await unpack(dest, [
    { path: "dev/", type: "Directory" },
    { path: "dev/null", type: "CharacterDevice", devmaj: 1, devmin: 3 },
    { path: "dev/sda", type: "BlockDevice", devmaj: 8, devmin: 0 },
    { path: "dev/kmem0", type: "CharacterDevice", devmaj: 0, devmin: 0 },
    { path: "fifo", type: "FIFO" },
  ]);
  assert.deepEqual(await readdir(join(dest, "dev")), []);
  assert.ok((await lstat(join(dest, "fifo"))).isFIFO());
  assert.equal(r.skipped.length, 3);
});

test("a huge declared size is refused before anything is read", async (t) => {
  const { dest } = await arena(t);
  await assert.rejects(unpack(dest, [{ path: "big", size: 2 ** 40, data: "tiny" }]), (e) => isCleanroomError(e, "image_invalid") && /declares/.test(e.message));
});

test("a truncated or corrupt tar is image_invalid", async (t) => {
  const { dest } = await arena(t);
  const full = tarOf([{ path: "f", data: Buffer.alloc(5000, 1) }]);
  await assert.rejects(unpackLayerStream(Readable.from([full.subarray(0, 2000)]), dest, TEST_ID_RANGE), (e) => isCleanroomError(e, "image_invalid"));
  const { dest: dest2 } = await arena(t);
  const bad = Buffer.from(full);
  bad[10] = 0x41; // breaks the header checksum
  await assert.rejects(unpackLayerStream(Readable.from([bad]), dest2, TEST_ID_RANGE), (e) => isCleanroomError(e, "image_invalid"));
});

test("hostile whiteout names cannot escape or clobber the parent", async (t) => {
  const { dest, top } = await arena(t);
  await unpack(dest, [
    { path: ".wh..." },
    { path: ".wh..wh..plnk" },
    { path: "sub/.wh.." },
  ]);
  assert.deepEqual((await readdir(dest)).sort(), ["sub"]);
  assert.deepEqual(await readdir(join(dest, "sub")), []);
  assert.ok((await lstat(top)).isDirectory());
});

test("importing an image with a hostile layer: escapes neutralized; a bomb refused and nothing stored", async (t) => {
  const layout = await tempDir(t);
  const outside = await tempDir(t);
  await writeOciLayout(layout, "bad", {
    layers: [tarOf([
      { path: "../../../../escape", data: "x" },
      { path: "link", type: "SymbolicLink", linkpath: outside },
      { path: "link/pwned", data: "x" },
      { path: "etc/passwd-link", type: "Link", linkpath: "/etc/passwd" },
      { path: "dev/mem", type: "CharacterDevice", devmaj: 1, devmin: 1 },
      { path: "ok", data: "ok" },
    ])],
  });
  const archive = join(await tempDir(t), "bad.tar");
  await run("tar", ["-C", layout, "-cf", archive, "."]);
  const root = await tempDir(t);
  const store = new ImageStore({ root, idRange: TEST_ID_RANGE });
  const image = await store.importArchive("local/bad:1", archive);
  const [dir] = await store.layerDirs(image);
  // skipped entries create nothing, not even their parent dirs
  assert.deepEqual((await readdir(dir!)).sort(), ["link", "ok"]);
  assert.deepEqual(await readdir(outside), []);

  // a decompression bomb: more uncompressed bytes than the layer limit allows
  const bombLayout = await tempDir(t);
  await writeOciLayout(bombLayout, "bomb", { layers: [tarOf([{ path: "zeros", data: Buffer.alloc(4 << 20) }])] });
  const bombArchive = join(await tempDir(t), "bomb.tar");
  await run("tar", ["-C", bombLayout, "-cf", bombArchive, "."]);
  const root2 = await tempDir(t);
  const store2 = new ImageStore({ root: root2, idRange: TEST_ID_RANGE });
  store2.layers.limits = { maxEntries: 100, maxBytes: 1 << 20 };
  await assert.rejects(store2.importArchive("local/bomb:1", bombArchive), (e) => isCleanroomError(e, "image_invalid"));
  assert.deepEqual(await readdir(join(root2, "blobs", "sha256")), [], "no blobs kept");
  assert.deepEqual(await readdir(join(root2, "layers")), [], "no layer dirs kept");
  assert.deepEqual(await store2.list(), []);
});
