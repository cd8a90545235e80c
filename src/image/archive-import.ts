import { createReadStream } from "node:fs";
import type { Readable } from "node:stream";
import { createHash } from "node:crypto";
import { open, rm } from "node:fs/promises";
import { CleanroomError } from "../errors/index.ts";
import type { BlobStore } from "./blob-store.ts";
import type { ImageVerifyInput } from "./verify-image.ts";
import { loadVerifiedImage } from "./verify-image.ts";
import type { VerifiedImage } from "./image-store.ts";
import type { ProgressFn } from "./image-types.ts";
import { MAX_LAYER_BYTES, MAX_MANIFEST_BYTES, MEDIA, parseManifest, selectPlatform, type Descriptor } from "./manifest.ts";
import type { Pin } from "./ref-index.ts";
import { normalizeEntryPath } from "./safe-path.ts";
import { forEachTarEntry } from "./tar-stream.ts";

export interface ImportContext {
  blobs: BlobStore;
  pin: Pin;
  /** digests this import stored for the first time (cleaned up if unused) */
  fresh: Set<string>;
  report: ProgressFn;
}

const MAX_ARCHIVE_ENTRIES = 100_000;
const MAX_ARCHIVE_BYTES = 256 * 2 ** 30;
const METADATA_FILES = new Set(["index.json", "manifest.json", "oci-layout", "repositories"]);
const REF_NAME = "org.opencontainers.image.ref.name";

function invalidArchive(why: string): CleanroomError {
  return new CleanroomError("image_invalid", `image archive refused: ${why}; pass an OCI image-layout tar (skopeo copy … oci-archive:FILE) or a docker save tar`);
}

/** Reads the archive, storing every blob verified; returns the chosen image's verified manifest and config. */
export async function importArchive(ctx: ImportContext, input: string | Readable, tag: string | undefined, platform: string): Promise<VerifiedImage> {
  const stream = typeof input === "string" ? createReadStream(input) : input;
  const metadata = new Map<string, Buffer>();
  /** every other file by path → its digest (docker save's legacy layout names blobs by path) */
  const byPath = new Map<string, { digest: string; size: number }>();
  ctx.report({ phase: "verifying", message: "reading archive" });
  await forEachTarEntry(stream, {
    maxEntries: MAX_ARCHIVE_ENTRIES,
    maxBytes: MAX_ARCHIVE_BYTES,
    wantsBody: (e) => e.type === "File" || e.type === "OldFile",
    onEntry: async (e, body) => {
      const norm = normalizeEntryPath(e.path);
      if (!body || !norm.ok) return;
      const rel = norm.rel;
      if (METADATA_FILES.has(rel)) {
        if (e.size > MAX_MANIFEST_BYTES) throw invalidArchive(`${rel} is larger than ${MAX_MANIFEST_BYTES} bytes`);
        const chunks: Buffer[] = [];
        for await (const c of body) chunks.push(c);
        metadata.set(rel, Buffer.concat(chunks));
        return;
      }
      if (e.size > MAX_LAYER_BYTES) throw invalidArchive(`${rel.slice(0, 200)} is larger than ${MAX_LAYER_BYTES} bytes`);
      const m = /^blobs\/sha256\/([a-f0-9]{64})$/.exec(rel);
      const digest = m ? `sha256:${m[1]}` : await ingestUnnamed(ctx, body, e.size);
      if (m) {
        if (!(await ctx.blobs.has(digest, e.size))) {
          ctx.fresh.add(digest);
          await ctx.pin.add([digest]);
          ctx.report({ phase: "verifying", layerDigest: digest, totalBytes: e.size });
          await ctx.blobs.ingest(body, { digest, sizeBytes: e.size });
        }
      }
      byPath.set(rel, { digest, size: e.size });
    },
  });
  const index = metadata.get("index.json");
  if (index) return fromOciLayout(ctx, index, tag, platform);
  const dockerManifest = metadata.get("manifest.json");
  if (dockerManifest) return fromDockerSave(ctx, dockerManifest, byPath, tag);
  throw invalidArchive("it has neither index.json nor manifest.json");
}

/** Stores a file whose name is not its digest (docker save legacy layout), computing the digest. */
async function ingestUnnamed(ctx: ImportContext, body: AsyncIterable<Buffer>, size: number): Promise<string> {
  const tmp = ctx.blobs.tempPath("import");
  const hash = createHash("sha256");
  const fh = await open(tmp, "wx", 0o600);
  try {
    for await (const c of body) {
      hash.update(c);
      await fh.write(c);
    }
  } finally {
    await fh.close();
  }
  const digest = `sha256:${hash.digest("hex")}`;
  if (await ctx.blobs.has(digest, size)) {
    await rm(tmp, { force: true });
  } else {
    ctx.fresh.add(digest);
    await ctx.pin.add([digest]);
    await ctx.blobs.commitVerified(tmp, digest);
  }
  return digest;
}

async function fromOciLayout(ctx: ImportContext, indexBytes: Buffer, tag: string | undefined, platform: string): Promise<VerifiedImage> {
  const parsed = parseManifest(indexBytes, MEDIA.ociIndex);
  if (parsed.kind !== "index") throw invalidArchive("index.json is not an image index");
  const ms = parsed.index.manifests;
  let chosen: Descriptor | undefined;
  if (ms.length === 1) chosen = ms[0];
  else if (tag !== undefined) chosen = ms.find((d) => d.annotations?.[REF_NAME] === tag || d.annotations?.[REF_NAME]?.endsWith(`:${tag}`));
  if (!chosen && ms.every((d) => d.platform)) chosen = selectPlatform(parsed.index, platform);
  if (!chosen) {
    const names = ms.map((d) => d.annotations?.[REF_NAME] ?? d.digest.slice(0, 19)).join(", ");
    throw invalidArchive(`index.json lists ${ms.length} images (${names}); name the one to import by its tag`);
  }
  let indexDigest: string | undefined;
  if (chosen.mediaType === MEDIA.ociIndex || chosen.mediaType === MEDIA.dockerList) {
    indexDigest = chosen.digest;
    const inner = parseManifest(await ctx.blobs.readVerified(chosen.digest, MAX_MANIFEST_BYTES), chosen.mediaType);
    if (inner.kind !== "index") throw invalidArchive("nested index is not an index");
    chosen = selectPlatform(inner.index, platform);
  }
  return loadVerifiedImage(ctx.blobs, { manifestDigest: chosen.digest, indexDigest } satisfies ImageVerifyInput);
}

async function fromDockerSave(ctx: ImportContext, bytes: Buffer, byPath: Map<string, { digest: string; size: number }>, tag: string | undefined): Promise<VerifiedImage> {
  let list: Array<{ Config?: unknown; Layers?: unknown; RepoTags?: unknown }>;
  try {
    list = JSON.parse(bytes.toString("utf8")) as typeof list;
  } catch {
    throw invalidArchive("manifest.json is not JSON");
  }
  if (!Array.isArray(list) || list.length === 0) throw invalidArchive("manifest.json lists no image");
  const entry = list.find((e) => Array.isArray(e.RepoTags) && e.RepoTags.some((t) => typeof t === "string" && tag !== undefined && t.endsWith(`:${tag}`))) ?? list[0]!;
  const lookup = (p: unknown): { digest: string; size: number } => {
    const norm = typeof p === "string" ? normalizeEntryPath(p) : undefined;
    const found = norm?.ok ? byPath.get(norm.rel) : undefined;
    if (!found) throw invalidArchive(`manifest.json names ${JSON.stringify(String(p).slice(0, 200))}, which the archive does not contain`);
    return found;
  };
  if (!Array.isArray(entry.Layers)) throw invalidArchive("manifest.json has no Layers");
  const config = lookup(entry.Config);
  // docker save layers are uncompressed tars: the blob digest is the diff id
  const manifest = {
    schemaVersion: 2,
    mediaType: MEDIA.ociManifest,
    config: { mediaType: MEDIA.ociConfig, digest: config.digest, size: config.size },
    layers: entry.Layers.map((l) => ({ mediaType: MEDIA.ociLayer, ...lookup(l) })),
  };
  const manifestBytes = Buffer.from(JSON.stringify(manifest));
  const manifestDigest = await ctx.blobs.putBytes(manifestBytes);
  ctx.fresh.add(manifestDigest);
  await ctx.pin.add([manifestDigest]);
  return loadVerifiedImage(ctx.blobs, { manifestDigest, indexDigest: undefined });
}
