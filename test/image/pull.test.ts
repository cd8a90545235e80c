import assert from "node:assert/strict";
import { lstat, mkdir, readdir, readFile, readlink } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { ImageStore, type ImageProgress } from "../../src/image/index.ts";
import { startRegistry, type TestRegistry } from "../fixtures/registry.ts";
import { getXattr, run, skopeoPush, TEST_ID_RANGE, tempDir } from "./helpers/env.ts";
import { T0, tarOf, writeOciLayout, type BuiltImage } from "./helpers/oci-layout.ts";

const base = TEST_ID_RANGE.hostBase;

const lowerLayer = tarOf([
  { path: "./", type: "Directory", mode: 0o755 },
  { path: "etc/", type: "Directory" },
  { path: "etc/hello", data: "hello world\n" },
  { path: "etc/hello-hard", type: "Link", linkpath: "etc/hello" },
  { path: "bin/", type: "Directory" },
  { path: "bin/tool", data: "#!/bin/sh\necho tool\n", mode: 0o4755 },
  { path: "bin/sh", type: "SymbolicLink", linkpath: "/bin/tool" },
  { path: "tmp/", type: "Directory", mode: 0o1777 },
  { path: "home/user/", type: "Directory", mode: 0o700, uid: 1000, gid: 1000 },
  { path: "home/user/notes", data: "mine", mode: 0o600, uid: 1000, gid: 1000 },
  { path: "shared/", type: "Directory", mode: 0o2775, gid: 50 },
  { path: "link-to-etc", type: "SymbolicLink", linkpath: "/etc" },
  { path: "var/data/a", data: "a" },
  { path: "var/data/b", data: "b" },
  { path: "old", data: "to be deleted" },
  { path: "run/fifo", type: "FIFO", mode: 0o640 },
]);
const upperLayer = tarOf([
  { path: ".wh.old" },
  { path: "var/data/.wh..wh..opq" },
  { path: "var/data/c", data: "c" },
  { path: "etc/hello", data: "hello again\n" },
]);

let registry: TestRegistry;
let built: BuiltImage;

test("pull by tag and by digest from docker-registry, layers unpacked in overlayfs form", async (t) => {
  registry = await startRegistry(t);
  const layout = await tempDir(t);
  built = await writeOciLayout(layout, "v1", { layers: [lowerLayer, upperLayer], cmd: ["/bin/tool"] });
  await skopeoPush(layout, "v1", `${registry.host}/cleanroom/test:v1`);

  const root = await tempDir(t);
  const store = new ImageStore({ root, idRange: TEST_ID_RANGE });
  const events: ImageProgress[] = [];
  const t0 = performance.now();
  const image = await store.pull(`${registry.host}/cleanroom/test:v1`, { onProgress: (p) => events.push(p) });
  const pullMs = performance.now() - t0;
  t.diagnostic(`pull+unpack of a 2-layer image: ${pullMs.toFixed(0)} ms`);

  assert.equal(image.ref, `${registry.host}/cleanroom/test:v1`);
  assert.equal(image.digest, built.manifestDigest, "skopeo kept the manifest digest");
  assert.equal(image.configDigest, built.configDigest);
  assert.deepEqual(image.layers.map((l) => l.diffId), built.layers.map((l) => l.diffId));
  assert.equal(image.platform, "linux/amd64");
  assert.deepEqual(image.config.cmd, ["/bin/tool"]);
  assert.equal(image.createdAt, T0.toISOString());
  for (const phase of ["resolving", "downloading", "unpacking", "done"]) assert.ok(events.some((e) => e.phase === phase), `progress phase ${phase}`);

  const [lower, upper] = await store.layerDirs(image);
  assert.ok(lower && upper);
  assert.equal(lower.length, root.length + "/layers/".length + 12, "layer dirs are short paths");
  assert.deepEqual(await store.layerDirs(image), [lower, upper], "second call returns the same dirs");

  // content, modes, shifted ownership
  assert.equal(await readFile(join(lower, "etc/hello"), "utf8"), "hello world\n");
  const tool = await lstat(join(lower, "bin/tool"));
  assert.equal(tool.mode & 0o7777, 0o4755, "setuid preserved");
  assert.equal(tool.uid, base);
  assert.equal(tool.gid, base);
  assert.equal(tool.mtime.getTime(), T0.getTime());
  assert.equal((await lstat(join(lower, "tmp"))).mode & 0o7777, 0o1777, "sticky dir preserved");
  assert.equal((await lstat(join(lower, "tmp"))).mtime.getTime(), T0.getTime(), "dir mtime set after its children");
  const shared = await lstat(join(lower, "shared"));
  assert.equal(shared.mode & 0o7777, 0o2775, "setgid dir preserved");
  assert.equal(shared.gid, base + 50);
  const notes = await lstat(join(lower, "home/user/notes"));
  assert.equal(notes.uid, base + 1000);
  assert.equal(notes.gid, base + 1000);
  const rootDir = await lstat(lower);
  assert.equal(rootDir.mode & 0o777, 0o755, "layer root traversable by the sandbox's root");
  assert.equal(rootDir.uid, base);
  // hardlink and symlinks
  assert.equal((await lstat(join(lower, "etc/hello-hard"))).ino, (await lstat(join(lower, "etc/hello"))).ino);
  assert.equal(await readlink(join(lower, "bin/sh")), "/bin/tool");
  assert.equal(await readlink(join(lower, "link-to-etc")), "/etc");
  assert.equal((await lstat(join(lower, "link-to-etc"))).uid, base, "symlink owned with lchown, target untouched");
  assert.ok((await lstat(join(lower, "run/fifo"))).isFIFO());
  // whiteout and opaque dir in the upper layer
  const wh = await lstat(join(upper, "old"));
  assert.ok(wh.isCharacterDevice(), "whiteout is a char device");
  assert.equal(wh.rdev, 0, "whiteout is device 0/0");
  assert.equal(await getXattr(join(upper, "var/data"), "trusted.overlay.opaque"), "y");
  assert.deepEqual(await readdir(join(upper, "var/data")), ["c"]);
  assert.equal(await readFile(join(upper, "etc/hello"), "utf8"), "hello again\n");

  // the same registry, by digest, into a fresh store
  const root2 = await tempDir(t);
  const store2 = new ImageStore({ root: root2, idRange: TEST_ID_RANGE });
  const byDigest = await store2.pull(`${registry.host}/cleanroom/test@${built.manifestDigest}`);
  assert.equal(byDigest.digest, built.manifestDigest);
  assert.equal(byDigest.ref, `${registry.host}/cleanroom/test@${built.manifestDigest}`);
  assert.ok(await store2.resolveLocal(built.manifestDigest));
  assert.ok(await store.resolveLocal(`${registry.host}/cleanroom/test@${built.manifestDigest}`), "a tag pull resolves by name@digest too");
  assert.equal(await store.resolveLocal(`${registry.host}/cleanroom/test:v2`), undefined);

  // ensure() is local when present: works with the registry gone
  await registry.stop();
  const again = await store.ensure(`${registry.host}/cleanroom/test:v1`);
  assert.equal(again.digest, image.digest);
});

test("the unpacked layers work as an overlayfs stack: whiteouts hide, opaque dirs reset", async (t) => {
  const registry2 = await startRegistry(t);
  const layout = await tempDir(t);
  await writeOciLayout(layout, "v1", { layers: [lowerLayer, upperLayer] });
  await skopeoPush(layout, "v1", `${registry2.host}/cleanroom/overlay:v1`);
  const root = await tempDir(t);
  const store = new ImageStore({ root, idRange: TEST_ID_RANGE });
  const image = await store.pull(`${registry2.host}/cleanroom/overlay:v1`);
  const dirs = await store.layerDirs(image);
  const mnt = join(root, "mnt");
  await mkdir(mnt);
  // overlay's lowerdir lists the top layer first
  await run("mount", ["-t", "overlay", "overlay", "-o", `lowerdir=${[...dirs].reverse().join(":")}`, mnt]);
  t.after(() => run("umount", [mnt]).catch(() => {}));
  const top = (await readdir(mnt)).sort();
  assert.ok(!top.includes("old"), "whited-out file is hidden");
  assert.deepEqual((await readdir(join(mnt, "var/data"))).sort(), ["c"], "opaque dir hides the lower contents");
  assert.equal(await readFile(join(mnt, "etc/hello"), "utf8"), "hello again\n");
  assert.equal(await readFile(join(mnt, "etc/hello-hard"), "utf8"), "hello world\n");
  await run("umount", [mnt]);
});
