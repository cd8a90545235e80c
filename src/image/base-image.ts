import { createHash } from "node:crypto";
import { mkdir, readdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { CleanroomError, messageOf } from "../errors/index.ts";
import type { Logger } from "../observability/index.ts";
import { hostAptDefaults } from "./apt-sources.ts";
import type { BlobStore } from "./blob-store.ts";
import type { VerifiedImage } from "./image-store.ts";
import type { ProgressFn } from "./image-types.ts";
import { hostPlatform, MEDIA, parseImageConfig, parseManifest } from "./manifest.ts";
import { mountsUnder, removeTreeSafely } from "./mounts.ts";
import { packRootfsLayer } from "./oci-pack.ts";
import type { Pin } from "./ref-index.ts";
import { runCommand } from "../host-command/index.ts";
import type { StoreLayout } from "./store-layout.ts";

export interface BaseImageOptions {
  ref?: string;
  suite?: string;
  mirror?: string;
  packages?: string[];
  onProgress?: ProgressFn;
}

export interface BuildContext {
  layout: StoreLayout;
  blobs: BlobStore;
  pin: Pin;
  fresh: Set<string>;
  report: ProgressFn;
  logger: Logger;
}

export const DEFAULT_BASE_PACKAGES = ["ca-certificates", "git", "curl"];
const DEBOOTSTRAP_TIMEOUT_MS = 30 * 60_000;
const IMAGE_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

function validate(suite: string, mirror: string, packages: string[]): void {
  if (!/^[a-z][a-z0-9-]{1,31}$/.test(suite)) throw new CleanroomError("invalid_argument", `invalid suite ${JSON.stringify(suite)}; use a Debian codename like bookworm`);
  if (!/^(https?|file):\/\/[^\s'"]+$/.test(mirror)) throw new CleanroomError("invalid_argument", `invalid mirror ${JSON.stringify(mirror)}; use an http(s):// or file:// Debian mirror URL`);
  for (const p of packages) {
    if (!/^[a-z0-9][a-z0-9+.-]{0,99}$/.test(p)) throw new CleanroomError("invalid_argument", `invalid package name ${JSON.stringify(p)}`);
  }
}

function debArch(): string {
  return hostPlatform().split("/")[1]!;
}

/**
 * Builds the Debian minbase image with debootstrap and packs it as a real OCI image (one gzip
 * layer, config, manifest) into the blob store. The downloaded .debs are cached as a debootstrap
 * tarball under cache/, so a rebuild skips the downloads.
 */
export async function buildBaseImage(ctx: BuildContext, opts: BaseImageOptions): Promise<VerifiedImage> {
  const defaults = await hostAptDefaults();
  const suite = opts.suite ?? defaults.suite;
  const mirror = (opts.mirror ?? defaults.mirror).replace(/\/+$/, "");
  const packages = [...new Set(opts.packages ?? DEFAULT_BASE_PACKAGES)].sort();
  validate(suite, mirror, packages);
  const arch = debArch();
  const work = ctx.layout.tempPath("base");
  await mkdir(work, { mode: 0o755 });
  const started = Date.now();
  try {
    const rootfs = join(work, "rootfs");
    const cacheKey = createHash("sha256").update(`${suite}|${arch}|${mirror}|${packages.join(",")}`).digest("hex").slice(0, 12);
    const cached = join(ctx.layout.cache, `debootstrap-${suite}-${arch}-${cacheKey}.tgz`);
    const debootstrapArgs = ["--variant=minbase", `--include=${packages.join(",")}`, `--arch=${arch}`];
    const onLine = (line: string) => {
      if (line.startsWith("I: ") || line.startsWith("W: ")) ctx.report({ phase: "building", message: line.slice(0, 300) });
    };
    const run = (args: string[]) =>
      runCommand("debootstrap", [...debootstrapArgs, ...args], {
        timeoutMs: DEBOOTSTRAP_TIMEOUT_MS,
        onLine,
        env: { ...process.env, DEBIAN_FRONTEND: "noninteractive", PATH: `/usr/sbin:/sbin:${process.env.PATH ?? "/usr/bin:/bin"}` },
      });
    if (!(await stat(cached).then((s) => s.isFile(), () => false))) {
      ctx.report({ phase: "building", message: `downloading ${suite} packages from ${mirror}` });
      const tarball = join(work, "debs.tgz");
      await run([`--make-tarball=${tarball}`, suite, join(work, "download"), mirror]);
      await rename(tarball, cached);
    }
    ctx.report({ phase: "building", message: `debootstrap ${suite} (${packages.join(" ")})` });
    try {
      await run([`--unpack-tarball=${cached}`, suite, rootfs, mirror]);
    } catch (e) {
      // a cache that no longer fits the mirror must not poison every later build
      await rm(cached, { force: true });
      throw e;
    }
    ctx.report({ phase: "building", message: `debootstrap finished in ${Math.round((Date.now() - started) / 1000)} s; packing` });
    await cleanRootfs(rootfs);
    return await packImage(ctx, rootfs, { suite, mirror, packages, arch });
  } catch (e) {
    if (e instanceof CleanroomError) throw e;
    throw new CleanroomError("internal", `building the base image failed: ${messageOf(e)}; check that debootstrap is installed and the mirror is reachable`);
  } finally {
    await removeTreeSafely(work).catch((e: unknown) => ctx.logger.error({ dir: work, err: messageOf(e) }, "could not remove base image build dir"));
  }
}

/** Drops what must not ship in an image: apt lists/caches, device nodes, host identity files, logs. */
async function cleanRootfs(rootfs: string): Promise<void> {
  if ((await mountsUnder(rootfs)).length) throw new Error(`debootstrap left mounts under ${rootfs}`);
  const emptyDir = async (rel: string, keep: (name: string) => boolean = () => false) => {
    const dir = join(rootfs, rel);
    for (const name of await readdir(dir).catch(() => [] as string[])) if (!keep(name)) await rm(join(dir, name), { recursive: true, force: true });
  };
  await emptyDir("var/lib/apt/lists", (n) => n === "partial" || n === "lock");
  await emptyDir("var/cache/apt", (n) => n === "archives");
  await emptyDir("var/cache/apt/archives", (n) => n === "partial" || n === "lock");
  for (const d of ["dev", "proc", "sys", "run", "tmp", "var/tmp", "var/log"]) await emptyDir(d);
  await rm(join(rootfs, "var/cache/ldconfig/aux-cache"), { force: true });
  await rm(join(rootfs, "debootstrap"), { recursive: true, force: true });
  // the sandbox gets its own; never ship the build host's
  await writeFile(join(rootfs, "etc/resolv.conf"), "");
  await writeFile(join(rootfs, "etc/hostname"), "cleanroom\n");
  await writeFile(join(rootfs, "etc/machine-id"), "");
}

async function packImage(ctx: BuildContext, rootfs: string, info: { suite: string; mirror: string; packages: string[]; arch: string }): Promise<VerifiedImage> {
  ctx.report({ phase: "building", message: "packing the root filesystem into an OCI layer" });
  const layerFile = ctx.blobs.tempPath("layer");
  let layer;
  try {
    layer = await packRootfsLayer(rootfs, layerFile);
    await ctx.pin.add([layer.digest]);
    if (await ctx.blobs.has(layer.digest, layer.sizeBytes)) await rm(layerFile, { force: true });
    else {
      ctx.fresh.add(layer.digest);
      await ctx.blobs.commitVerified(layerFile, layer.digest);
    }
  } catch (e) {
    await rm(layerFile, { force: true });
    throw e;
  }
  const created = new Date().toISOString();
  const config = {
    created,
    architecture: info.arch,
    os: "linux",
    config: { Env: [IMAGE_PATH], Cmd: ["/bin/sh"] },
    rootfs: { type: "layers", diff_ids: [layer.diffId] },
    history: [{ created, created_by: `debootstrap --variant=minbase --include=${info.packages.join(",")} ${info.suite} ${info.mirror}` }],
  };
  const configBytes = Buffer.from(JSON.stringify(config));
  const configDigest = await ctx.blobs.putBytes(configBytes);
  const manifest = {
    schemaVersion: 2,
    mediaType: MEDIA.ociManifest,
    config: { mediaType: MEDIA.ociConfig, digest: configDigest, size: configBytes.length },
    layers: [{ mediaType: MEDIA.ociLayerGzip, digest: layer.digest, size: layer.sizeBytes }],
    annotations: { "org.opencontainers.image.title": `cleanroom base (${info.suite} minbase)` },
  };
  const manifestBytes = Buffer.from(JSON.stringify(manifest));
  const manifestDigest = await ctx.blobs.putBytes(manifestBytes);
  for (const d of [configDigest, manifestDigest]) ctx.fresh.add(d);
  await ctx.pin.add([configDigest, manifestDigest]);
  const parsed = parseManifest(manifestBytes, MEDIA.ociManifest);
  if (parsed.kind !== "manifest") throw new Error("unreachable: built manifest is not a manifest");
  ctx.logger.info({ digest: manifestDigest, layer_bytes: layer.sizeBytes, rootfs_bytes: layer.uncompressedBytes }, "base image packed");
  return { manifest: parsed.manifest, manifestDigest, config: parseImageConfig(configBytes, 1), indexDigest: undefined };
}
