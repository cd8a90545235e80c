import { CleanroomError } from "../errors/index.ts";
import { digestMismatch, sha256Digest } from "./blob-store.ts";
import { MANIFEST_ACCEPT, MAX_MANIFEST_BYTES, parseManifest, selectPlatform, type ImageManifest } from "./manifest.ts";
import { formatImageRef, type ImageRef } from "./ref.ts";
import { readBytesBounded } from "./registry-auth.ts";
import type { RegistryClient } from "./registry-client.ts";

export interface ResolvedManifest {
  manifest: ImageManifest;
  manifestBytes: Buffer;
  manifestDigest: string;
  /** the index/manifest list the platform manifest was chosen from, when there was one */
  index?: { bytes: Buffer; digest: string };
}

async function fetchManifestBytes(client: RegistryClient, ref: ImageRef, reference: string, signal?: AbortSignal): Promise<{ bytes: Buffer; digest: string; contentType: string | undefined }> {
  const res = await client.get(ref, `manifests/${reference}`, { accept: MANIFEST_ACCEPT }, signal);
  if (!res.ok) throw await client.failure(res, `manifest ${formatImageRef(ref)}`);
  const declared = Number(res.headers.get("content-length") ?? "0");
  if (declared > MAX_MANIFEST_BYTES) {
    await res.body?.cancel().catch(() => {});
    throw new CleanroomError("image_invalid", `manifest of ${formatImageRef(ref)} is ${declared} bytes, more than the ${MAX_MANIFEST_BYTES} allowed`);
  }
  const bytes = await readBytesBounded(res, MAX_MANIFEST_BYTES, true);
  const digest = sha256Digest(bytes);
  // by digest we verify; by tag the digest is whatever the bytes hash to (never the header's claim)
  if (reference.startsWith("sha256:") && digest !== reference) throw digestMismatch(`manifest ${formatImageRef(ref)}`, reference, digest);
  return { bytes, digest, contentType: res.headers.get("content-type") ?? undefined };
}

/** Fetches the manifest for `ref`, descending through an index/manifest list to `platform`'s manifest. */
export async function resolveManifest(client: RegistryClient, ref: ImageRef, platform: string, signal?: AbortSignal): Promise<ResolvedManifest> {
  const top = await fetchManifestBytes(client, ref, ref.digest ?? ref.tag ?? "latest", signal);
  const parsed = parseManifest(top.bytes, top.contentType);
  if (parsed.kind === "manifest") return { manifest: parsed.manifest, manifestBytes: top.bytes, manifestDigest: top.digest };
  const chosen = selectPlatform(parsed.index, platform);
  const child = await fetchManifestBytes(client, ref, chosen.digest, signal);
  const inner = parseManifest(child.bytes, child.contentType);
  if (inner.kind !== "manifest") throw new CleanroomError("image_invalid", `the index of ${formatImageRef(ref)} points at another index; nested indexes are not supported`);
  return { manifest: inner.manifest, manifestBytes: child.bytes, manifestDigest: child.digest, index: { bytes: top.bytes, digest: top.digest } };
}
