/** The runtime defaults an image's config carries (Docker's Config: Env, Cmd, Entrypoint, WorkingDir, User). */
export interface ImageConfig {
  env: string[];
  cmd: string[];
  entrypoint: string[];
  workingDir: string;
  user: string;
}

/** One layer: the compressed blob's digest and the uncompressed tar's digest (diff id). */
export interface ImageLayer {
  digest: string;
  diffId: string;
  sizeBytes: number;
  mediaType: string;
}

/** A locally stored image. */
export interface ImageRecord {
  ref: string;
  /** manifest digest "sha256:…" (the platform manifest, not an index) */
  digest: string;
  configDigest: string;
  layers: ImageLayer[];
  config: ImageConfig;
  /** compressed size of the layers plus config */
  sizeBytes: number;
  /** ISO time: the config's `created` when valid, else when it was stored */
  createdAt: string;
  /** e.g. linux/amd64 */
  platform: string;
}

export interface ImageProgress {
  phase: "resolving" | "downloading" | "verifying" | "unpacking" | "building" | "done";
  layerDigest?: string;
  receivedBytes?: number;
  totalBytes?: number;
  message?: string;
}

export type ProgressFn = (p: ImageProgress) => void;
