import { CleanroomError } from "../errors/index.ts";
import type { BlobStore } from "./blob-store.ts";
import type { VerifiedImage } from "./image-store.ts";
import { MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES, parseImageConfig, parseManifest } from "./manifest.ts";

export interface ImageVerifyInput {
  manifestDigest: string;
  indexDigest: string | undefined;
}

/** Loads an image whose blobs are already in the store, re-verifying manifest and config and checking every layer is present. */
export async function loadVerifiedImage(blobs: BlobStore, input: ImageVerifyInput): Promise<VerifiedImage> {
  if (!(await blobs.has(input.manifestDigest))) throw new CleanroomError("image_invalid", `manifest ${input.manifestDigest} is missing from the archive`);
  const parsed = parseManifest(await blobs.readVerified(input.manifestDigest, MAX_MANIFEST_BYTES), undefined);
  if (parsed.kind !== "manifest") throw new CleanroomError("image_invalid", `${input.manifestDigest} is an index where an image manifest was expected`);
  const m = parsed.manifest;
  if (!(await blobs.has(m.config.digest, m.config.size))) throw new CleanroomError("image_invalid", `config ${m.config.digest} is missing or has the wrong size`);
  const config = parseImageConfig(await blobs.readVerified(m.config.digest, MAX_CONFIG_BYTES), m.layers.length);
  for (const l of m.layers) {
    if (!(await blobs.has(l.digest, l.size))) throw new CleanroomError("image_invalid", `layer ${l.digest} is missing or has the wrong size`);
  }
  return { manifest: m, manifestDigest: input.manifestDigest, config, indexDigest: input.indexDigest };
}
