import { z } from "zod";
import { CleanroomError } from "../errors/index.ts";

export const MEDIA = {
  ociIndex: "application/vnd.oci.image.index.v1+json",
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  ociConfig: "application/vnd.oci.image.config.v1+json",
  ociLayer: "application/vnd.oci.image.layer.v1.tar",
  ociLayerGzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  ociLayerZstd: "application/vnd.oci.image.layer.v1.tar+zstd",
  dockerList: "application/vnd.docker.distribution.manifest.list.v2+json",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerConfig: "application/vnd.docker.container.image.v1+json",
  dockerLayerGzip: "application/vnd.docker.image.rootfs.diff.tar.gzip",
  dockerLayer: "application/vnd.docker.image.rootfs.diff.tar",
} as const;

export const MANIFEST_ACCEPT = [MEDIA.ociIndex, MEDIA.ociManifest, MEDIA.dockerList, MEDIA.dockerManifest].join(", ");
export const MAX_MANIFEST_BYTES = 4 << 20;
export const MAX_CONFIG_BYTES = 8 << 20;
export const MAX_LAYERS = 127;
export const MAX_LAYER_BYTES = 64 * 2 ** 30;

const LAYER_TYPES = new Set<string>([MEDIA.ociLayer, MEDIA.ociLayerGzip, MEDIA.ociLayerZstd, MEDIA.dockerLayerGzip, MEDIA.dockerLayer]);
const CONFIG_TYPES = new Set<string>([MEDIA.ociConfig, MEDIA.dockerConfig]);

const digestSchema = z.string().regex(/^sha256:[a-f0-9]{64}$/, "digest must be sha256:<64 lowercase hex>");
const descriptorSchema = z.object({
  mediaType: z.string().max(256),
  digest: digestSchema,
  size: z.number().int().nonnegative().max(MAX_LAYER_BYTES),
  urls: z.array(z.string()).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
  platform: z
    .object({ os: z.string().max(64), architecture: z.string().max(64), variant: z.string().max(64).optional() })
    .optional(),
});
export type Descriptor = z.infer<typeof descriptorSchema>;

const manifestSchema = z.object({
  schemaVersion: z.literal(2),
  mediaType: z.string().optional(),
  config: descriptorSchema,
  layers: z.array(descriptorSchema).max(MAX_LAYERS),
});
export type ImageManifest = z.infer<typeof manifestSchema>;

const indexSchema = z.object({
  schemaVersion: z.literal(2),
  mediaType: z.string().optional(),
  manifests: z.array(descriptorSchema).max(1024),
});
export type ImageIndex = z.infer<typeof indexSchema>;

const strings = z.array(z.string().max(1 << 16)).max(4096);
const configSchema = z.object({
  architecture: z.string().max(64),
  os: z.string().max(64),
  variant: z.string().max(64).optional(),
  created: z.string().max(64).optional(),
  config: z
    .object({
      Env: strings.nullish(),
      Cmd: strings.nullish(),
      Entrypoint: strings.nullish(),
      WorkingDir: z.string().max(4096).nullish(),
      User: z.string().max(256).nullish(),
    })
    .nullish(),
  rootfs: z.object({ type: z.literal("layers"), diff_ids: z.array(digestSchema).max(MAX_LAYERS) }),
});
export type ImageConfigBlob = z.infer<typeof configSchema>;

export type ParsedManifest = { kind: "index"; index: ImageIndex } | { kind: "manifest"; manifest: ImageManifest };

function bad(what: string, why: string): CleanroomError {
  return new CleanroomError("image_invalid", `${what}: ${why}; the image is malformed or not a container image — rebuild or re-push it`);
}

function parseJson(bytes: Buffer, what: string): unknown {
  try {
    return JSON.parse(bytes.toString("utf8"));
  } catch (e) {
    throw bad(what, `not JSON (${(e as Error).message})`);
  }
}

function issues(err: z.ZodError): string {
  return err.issues.slice(0, 3).map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ");
}

/** Parses a manifest or index body, using the HTTP content type when the body names none. */
export function parseManifest(bytes: Buffer, contentType: string | undefined): ParsedManifest {
  const json = parseJson(bytes, "manifest");
  const declared = (json as { mediaType?: unknown })?.mediaType;
  const type = typeof declared === "string" ? declared : (contentType ?? "").split(";")[0]!.trim();
  const isIndex = type === MEDIA.ociIndex || type === MEDIA.dockerList || (!type && Array.isArray((json as { manifests?: unknown })?.manifests));
  if (isIndex) {
    const r = indexSchema.safeParse(json);
    if (!r.success) throw bad("image index", issues(r.error));
    return { kind: "index", index: r.data };
  }
  if (type && type !== MEDIA.ociManifest && type !== MEDIA.dockerManifest) {
    throw bad("manifest", `unsupported media type ${JSON.stringify(type.slice(0, 100))} (schema 1 and artifacts are not supported)`);
  }
  const r = manifestSchema.safeParse(json);
  if (!r.success) throw bad("manifest", issues(r.error));
  const m = r.data;
  if (!CONFIG_TYPES.has(m.config.mediaType)) throw bad("manifest", `config media type ${JSON.stringify(m.config.mediaType)} is not a container image config`);
  if (m.config.size > MAX_CONFIG_BYTES) throw bad("manifest", `config of ${m.config.size} bytes exceeds ${MAX_CONFIG_BYTES}`);
  for (const l of m.layers) {
    if (!LAYER_TYPES.has(l.mediaType)) throw bad("manifest", `layer media type ${JSON.stringify(l.mediaType)} is not supported (foreign/non-distributable layers are refused)`);
    if (l.urls?.length) throw bad("manifest", "layers with external urls are refused");
  }
  return { kind: "manifest", manifest: m };
}

/** Parses and checks an image config blob against the manifest's layer count. */
export function parseImageConfig(bytes: Buffer, layerCount: number): ImageConfigBlob {
  const r = configSchema.safeParse(parseJson(bytes, "image config"));
  if (!r.success) throw bad("image config", issues(r.error));
  if (r.data.rootfs.diff_ids.length !== layerCount) {
    throw bad("image config", `${r.data.rootfs.diff_ids.length} diff_ids for ${layerCount} layers`);
  }
  return r.data;
}

/** "linux/amd64" or "linux/arm64/v8" → parts; throws invalid_argument on anything else. */
export function parsePlatform(p: string): { os: string; architecture: string; variant: string | undefined } {
  const m = /^([a-z0-9]+)\/([a-z0-9_]+)(?:\/([a-z0-9]+))?$/.exec(p);
  if (!m) throw new CleanroomError("invalid_argument", `invalid platform ${JSON.stringify(p)}; use os/arch[/variant], e.g. linux/amd64`);
  return { os: m[1]!, architecture: m[2]!, variant: m[3] };
}

/** Picks the manifest for `platform` from an index (exact variant first, then any variant of the arch). */
export function selectPlatform(index: ImageIndex, platform: string): Descriptor {
  const want = parsePlatform(platform);
  const candidates = index.manifests.filter(
    (d) => d.platform?.os === want.os && d.platform.architecture === want.architecture && (d.mediaType === MEDIA.ociManifest || d.mediaType === MEDIA.dockerManifest),
  );
  const exact = candidates.find((d) => (want.variant === undefined ? !d.platform?.variant || d.platform.variant === defaultVariant(want.architecture) : d.platform?.variant === want.variant));
  const chosen = exact ?? candidates[0];
  if (!chosen) {
    const have = index.manifests.map((d) => (d.platform ? `${d.platform.os}/${d.platform.architecture}${d.platform.variant ? `/${d.platform.variant}` : ""}` : "?")).join(", ");
    throw new CleanroomError("image_not_found", `the image has no manifest for ${platform} (it has: ${have || "none"}); pick an image built for this platform`);
  }
  return chosen;
}

function defaultVariant(arch: string): string | undefined {
  return arch === "arm64" ? "v8" : undefined;
}

/** Platform of this host in OCI terms, e.g. "linux/amd64". */
export function hostPlatform(): string {
  const arch = { x64: "amd64", arm64: "arm64", arm: "arm", ppc64: "ppc64le", s390x: "s390x", riscv64: "riscv64" }[process.arch as string] ?? process.arch;
  return `linux/${arch}`;
}
