import assert from "node:assert/strict";
import { lstat, mkdir, readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { DEFAULT_BASE_IMAGE_REF, ImageStore, type ImageProgress } from "../../src/image/index.ts";
import { run, TEST_ID_RANGE } from "./helpers/env.ts";

// debootstrap takes minutes; the store (with its debootstrap cache) is kept across runs under
// CLEANROOM_BASE_IMAGE_TEST_ROOT when set, else it lives in a temp dir removed afterwards.
const skip = process.env.CLEANROOM_SKIP_BASE_IMAGE === "1" ? "CLEANROOM_SKIP_BASE_IMAGE=1" : false;

test("buildBaseImage builds Debian minbase with ca-certificates, git, curl as a real OCI image", { skip, timeout: 30 * 60_000 }, async (t) => {
  const keep = process.env.CLEANROOM_BASE_IMAGE_TEST_ROOT;
  const root = keep ?? join("/var/tmp", `cleanroom-base-test-${process.pid}`);
  await mkdir(root, { recursive: true });
  if (!keep) t.after(() => rm(root, { recursive: true, force: true }));
  const store = new ImageStore({ root, idRange: TEST_ID_RANGE });

  const prebuilt = await store.resolveLocal(DEFAULT_BASE_IMAGE_REF);
  const events: ImageProgress[] = [];
  const t0 = performance.now();
  const image = await store.buildBaseImage({ onProgress: (p) => events.push(p) });
  const buildMs = performance.now() - t0;
  t.diagnostic(`base image build: ${(buildMs / 1000).toFixed(1)} s, layer ${(image.layers[0]!.sizeBytes / 2 ** 20).toFixed(1)} MiB gzip`);
  assert.equal(image.ref, DEFAULT_BASE_IMAGE_REF);
  assert.match(image.digest, /^sha256:[a-f0-9]{64}$/);
  assert.equal(image.layers.length, 1);
  assert.equal(image.layers[0]!.mediaType, "application/vnd.oci.image.layer.v1.tar+gzip");
  assert.deepEqual(image.config.cmd, ["/bin/sh"]);
  assert.ok(image.config.env.some((e) => e.startsWith("PATH=")));
  assert.equal(image.platform, "linux/amd64");
  if (!prebuilt) assert.ok(events.some((e) => e.phase === "building"));

  const t1 = performance.now();
  const [dir] = await store.layerDirs(image);
  t.diagnostic(`layerDirs (already unpacked during build): ${(performance.now() - t1).toFixed(0)} ms`);
  for (const bin of ["bin/sh", "usr/bin/git", "usr/bin/curl", "etc/ssl/certs/ca-certificates.crt", "usr/bin/apt-get"]) {
    await lstat(join(dir!, bin));
  }
  assert.deepEqual(await readdir(join(dir!, "var/lib/apt/lists")).then((l) => l.filter((n) => n !== "partial" && n !== "lock")), [], "apt lists cleaned");
  assert.deepEqual(await readdir(join(dir!, "dev")), [], "no device nodes");
  assert.equal(await readFile(join(dir!, "etc/resolv.conf"), "utf8"), "", "no host resolv.conf");
  assert.equal((await lstat(join(dir!, "usr/bin/git"))).uid, TEST_ID_RANGE.hostBase, "ownership shifted");
  assert.equal((await lstat(join(dir!, "usr/bin/passwd"))).mode & 0o4000, 0o4000, "setuid kept");

  // the image runs: a read-only overlay of the layer with the host's /dev bound in, then chroot
  const mnt = join(root, "mnt-test");
  const empty = join(root, "mnt-empty");
  await mkdir(mnt, { recursive: true });
  await mkdir(empty, { recursive: true });
  // overlayfs without an upper dir needs two lower dirs
  await run("mount", ["-t", "overlay", "overlay", "-o", `ro,lowerdir=${dir!}:${empty}`, mnt]);
  t.after(() => run("umount", [mnt]).catch(() => {}));
  await run("mount", ["--bind", "/dev", join(mnt, "dev")]);
  t.after(() => run("umount", [join(mnt, "dev")]).catch(() => {}));
  const out = await run("chroot", [mnt, "/bin/sh", "-c", "git --version && curl --version | head -1"]);
  assert.match(out, /git version/);
  assert.match(out, /curl \d/);
  await run("umount", [join(mnt, "dev")]);
  await run("umount", [mnt]);
  await rm(mnt, { recursive: true });
  await rm(empty, { recursive: true });

  // idempotent and fast when present
  const t2 = performance.now();
  const again = await store.buildBaseImage();
  t.diagnostic(`second buildBaseImage: ${(performance.now() - t2).toFixed(0)} ms`);
  assert.equal(again.digest, image.digest);
  assert.ok(performance.now() - t2 < 2000);

  // the debootstrap tarball is cached for rebuilds
  const cache = await readdir(join(root, "cache"));
  assert.ok(cache.some((n) => /^debootstrap-bookworm-amd64-[a-f0-9]{12}\.tgz$/.test(n)), cache.join(","));
  assert.deepEqual(await readdir(join(root, "tmp")), [], "build dir removed");
});
