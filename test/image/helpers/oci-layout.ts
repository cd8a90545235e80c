import { createHash } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { Header } from "tar";

/** One tar entry, written raw (so tests can also write hostile ones). */
export interface TarSpec {
  path: string;
  type?: "File" | "Directory" | "SymbolicLink" | "Link" | "CharacterDevice" | "BlockDevice" | "FIFO";
  data?: string | Buffer;
  mode?: number;
  uid?: number;
  gid?: number;
  linkpath?: string;
  /** declared size when it should differ from the data (hostile "huge size" entries) */
  size?: number;
  mtime?: Date;
  devmaj?: number;
  devmin?: number;
}

export const T0 = new Date("2024-01-02T03:04:05Z");

/** Builds an uncompressed tar with node-tar's Header encoder. */
export function tarOf(entries: TarSpec[]): Buffer {
  const blocks: Buffer[] = [];
  for (const e of entries) {
    const type = e.type ?? "File";
    const data = e.data === undefined ? Buffer.alloc(0) : Buffer.from(e.data);
    const size = e.size ?? (type === "File" ? data.length : 0);
    const header = new Header({
      path: e.path,
      type,
      mode: e.mode ?? (type === "Directory" ? 0o755 : 0o644),
      uid: e.uid ?? 0,
      gid: e.gid ?? 0,
      size,
      mtime: e.mtime ?? T0,
      linkpath: e.linkpath,
      devmaj: e.devmaj ?? 0,
      devmin: e.devmin ?? 0,
      uname: "",
      gname: "",
    });
    const block = Buffer.alloc(512);
    header.encode(block, 0);
    blocks.push(block);
    if (data.length) {
      blocks.push(data, Buffer.alloc((512 - (data.length % 512)) % 512));
    }
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

export function sha256(b: Buffer | string): string {
  return `sha256:${createHash("sha256").update(b).digest("hex")}`;
}

export interface BuiltImage {
  manifestDigest: string;
  configDigest: string;
  layers: { digest: string; diffId: string }[];
  manifest: Buffer;
}

export interface ImageSpec {
  layers: Buffer[];
  architecture?: string;
  variant?: string;
  cmd?: string[];
  env?: string[];
  /** override diff ids (to build an image whose config lies) */
  diffIds?: string[];
  gzip?: boolean;
}

async function putBlob(dir: string, bytes: Buffer): Promise<string> {
  const digest = sha256(bytes);
  await writeFile(join(dir, "blobs", "sha256", digest.slice(7)), bytes);
  return digest;
}

/** Writes an image's blobs (config, layers, manifest) into an OCI layout dir and returns its digests. */
export async function writeImageBlobs(dir: string, spec: ImageSpec): Promise<BuiltImage> {
  await mkdir(join(dir, "blobs", "sha256"), { recursive: true });
  const gzip = spec.gzip ?? true;
  const layers = [];
  const descs = [];
  for (const tar of spec.layers) {
    const blob = gzip ? gzipSync(tar) : tar;
    const digest = await putBlob(dir, blob);
    layers.push({ digest, diffId: sha256(tar) });
    descs.push({ mediaType: gzip ? "application/vnd.oci.image.layer.v1.tar+gzip" : "application/vnd.oci.image.layer.v1.tar", digest, size: blob.length });
  }
  const config = Buffer.from(JSON.stringify({
    created: T0.toISOString(),
    architecture: spec.architecture ?? "amd64",
    ...(spec.variant ? { variant: spec.variant } : {}),
    os: "linux",
    config: { Env: spec.env ?? ["PATH=/usr/bin:/bin"], Cmd: spec.cmd ?? ["/bin/sh"], WorkingDir: "/", User: "0:0" },
    rootfs: { type: "layers", diff_ids: spec.diffIds ?? layers.map((l) => l.diffId) },
  }));
  const configDigest = await putBlob(dir, config);
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: configDigest, size: config.length },
    layers: descs,
  }));
  const manifestDigest = await putBlob(dir, manifest);
  return { manifestDigest, configDigest, layers, manifest };
}

/** Writes a complete OCI layout with one tagged image. */
export async function writeOciLayout(dir: string, tag: string, spec: ImageSpec): Promise<BuiltImage> {
  const img = await writeImageBlobs(dir, spec);
  await writeLayoutIndex(dir, [{ mediaType: "application/vnd.oci.image.manifest.v1+json", digest: img.manifestDigest, size: img.manifest.length, annotations: { "org.opencontainers.image.ref.name": tag } }]);
  return img;
}

/** Writes a multi-platform OCI layout: index.json → an image index blob (tagged) → one manifest per platform. */
export async function writeMultiPlatformLayout(dir: string, tag: string, images: ImageSpec[]): Promise<{ indexDigest: string; images: BuiltImage[] }> {
  const built: BuiltImage[] = [];
  for (const spec of images) built.push(await writeImageBlobs(dir, spec));
  const index = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.index.v1+json",
    manifests: built.map((b, i) => ({
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      digest: b.manifestDigest,
      size: b.manifest.length,
      platform: { os: "linux", architecture: images[i]!.architecture ?? "amd64", ...(images[i]!.variant ? { variant: images[i]!.variant } : {}) },
    })),
  }));
  const indexDigest = await putBlob(dir, index);
  await writeLayoutIndex(dir, [{ mediaType: "application/vnd.oci.image.index.v1+json", digest: indexDigest, size: index.length, annotations: { "org.opencontainers.image.ref.name": tag } }]);
  return { indexDigest, images: built };
}

async function writeLayoutIndex(dir: string, manifests: object[]): Promise<void> {
  await writeFile(join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  await writeFile(join(dir, "index.json"), JSON.stringify({ schemaVersion: 2, manifests }));
}
