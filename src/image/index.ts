/**
 * Images: OCI registry client, content-addressed blob store, secure layer unpacking into
 * overlayfs-ready dirs, archive import, and the locally built Debian base image.
 */
export { ImageStore, DEFAULT_BASE_IMAGE_REF } from "./image-store.ts";
export type { ImageConfig, ImageLayer, ImageRecord, ImageProgress } from "./image-types.ts";
export type { RegistryOptions } from "./registry-client.ts";
export { unpackLayerStream, type UnpackResult } from "./layer-unpack.ts";
export { parseImageRef, formatImageRef, type ImageRef } from "./ref.ts";
