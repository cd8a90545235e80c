import type { ImageConfig, ImageLayer, ImageRecord } from "./image-types.ts";
import type { ImageConfigBlob, ImageManifest } from "./manifest.ts";
import type { StoredImage } from "./ref-index.ts";

/** Builds the stored record of an image from its verified manifest and config. */
export function imageRecord(args: {
  ref: string;
  manifest: ImageManifest;
  manifestDigest: string;
  config: ImageConfigBlob;
  indexDigest?: string | undefined;
}): StoredImage {
  const { manifest, config } = args;
  const layers: ImageLayer[] = manifest.layers.map((l, i) => ({ digest: l.digest, diffId: config.rootfs.diff_ids[i]!, sizeBytes: l.size, mediaType: l.mediaType }));
  const c = config.config ?? {};
  const imageConfig: ImageConfig = {
    env: c.Env ?? [],
    cmd: c.Cmd ?? [],
    entrypoint: c.Entrypoint ?? [],
    workingDir: c.WorkingDir ?? "",
    user: c.User ?? "",
  };
  const created = config.created && !Number.isNaN(Date.parse(config.created)) ? new Date(config.created).toISOString() : new Date().toISOString();
  const blobs = [args.manifestDigest, manifest.config.digest, ...layers.map((l) => l.digest)];
  if (args.indexDigest) blobs.push(args.indexDigest);
  const record: StoredImage = {
    ref: args.ref,
    digest: args.manifestDigest,
    configDigest: manifest.config.digest,
    layers,
    config: imageConfig,
    sizeBytes: manifest.config.size + layers.reduce((n, l) => n + l.sizeBytes, 0),
    createdAt: created,
    platform: `${config.os}/${config.architecture}${config.variant ? `/${config.variant}` : ""}`,
    blobs,
  };
  if (args.indexDigest) record.indexDigest = args.indexDigest;
  return record;
}

/** The public view of a stored record (without GC bookkeeping). */
export function publicRecord(s: StoredImage): ImageRecord {
  const { indexDigest: _i, blobs: _b, ...rest } = s;
  return rest;
}
