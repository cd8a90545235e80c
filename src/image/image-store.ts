import type { Readable } from "node:stream";
import type { IdRange } from "../config/index.ts";
import { CleanroomError } from "../errors/index.ts";
import { silentLogger, type Logger } from "../observability/index.ts";
import { importArchive } from "./archive-import.ts";
import { buildBaseImage, type BaseImageOptions } from "./base-image.ts";
import { downloadBlob } from "./blob-download.ts";
import { BlobStore } from "./blob-store.ts";
import { collectGarbage, type GcResult } from "./gc.ts";
import { imageRecord, publicRecord } from "./image-record.ts";
import type { ImageProgress, ImageRecord, ProgressFn } from "./image-types.ts";
import { LayerStore } from "./layer-store.ts";
import { hostPlatform, MAX_CONFIG_BYTES, parseImageConfig, parsePlatform, type ImageConfigBlob, type ImageManifest } from "./manifest.ts";
import { formatImageRef, isDigest, parseImageRef, repositoryName } from "./ref.ts";
import { Pin, RefIndex, type StoredImage } from "./ref-index.ts";
import { RegistryClient, type RegistryOptions } from "./registry-client.ts";
import { resolveManifest } from "./registry-pull.ts";
import { StoreLayout } from "./store-layout.ts";

/** Tag of the locally built default image. */
export const DEFAULT_BASE_IMAGE_REF = "cleanroom.local/base:bookworm";

const PARALLEL_DOWNLOADS = 3;

/** What the pull/import/build paths share once the manifest and config are verified and stored. */
export interface VerifiedImage {
  manifest: ImageManifest;
  manifestDigest: string;
  config: ImageConfigBlob;
  indexDigest?: string | undefined;
}

/**
 * The local image store: content-addressed blobs, unpacked layers shared read-only by sandboxes,
 * and a ref index. Safe for two daemons sharing `root` (atomic renames, pins against GC).
 */
export class ImageStore {
  readonly layout: StoreLayout;
  readonly blobs: BlobStore;
  readonly layers: LayerStore;
  readonly refs: RefIndex;
  readonly logger: Logger;
  private readonly client: RegistryClient;
  private ready: Promise<void> | undefined;

  constructor(opts: { root: string; idRange: IdRange; logger?: Logger; registry?: RegistryOptions }) {
    this.layout = new StoreLayout(opts.root);
    this.logger = opts.logger ?? silentLogger();
    this.blobs = new BlobStore(this.layout);
    this.layers = new LayerStore(this.layout, opts.idRange, this.logger);
    this.refs = new RefIndex(this.layout);
    this.client = new RegistryClient(opts.registry, this.logger);
  }

  private async init(): Promise<void> {
    this.ready ??= this.layout.ensure();
    await this.ready;
  }

  /** Pulls `ref` from its registry: manifest (list) → config → layers, every blob verified, then unpacks. */
  async pull(ref: string, opts: { onProgress?: ProgressFn; signal?: AbortSignal; platform?: string } = {}): Promise<ImageRecord> {
    const parsed = parseImageRef(ref);
    const platform = opts.platform ?? hostPlatform();
    parsePlatform(platform);
    await this.init();
    const report = opts.onProgress ?? (() => {});
    const name = formatImageRef(parsed);
    report({ phase: "resolving", message: name });
    return this.withPin(async (pin, fresh) => {
      const resolved = await resolveManifest(this.client, parsed, platform, opts.signal);
      const m = resolved.manifest;
      await pin.add([resolved.manifestDigest, m.config.digest, ...m.layers.map((l) => l.digest), ...(resolved.index ? [resolved.index.digest] : [])]);
      if (resolved.index) await this.storeBytes(resolved.index.bytes, resolved.index.digest, fresh);
      await this.storeBytes(resolved.manifestBytes, resolved.manifestDigest, fresh);
      const ctx = { client: this.client, blobs: this.blobs, layout: this.layout, logger: this.logger, signal: opts.signal };
      const download = async (d: { digest: string; size: number; mediaType: string; urls?: string[] | undefined }) => {
        if (!(await this.blobs.has(d.digest, d.size))) fresh.add(d.digest);
        await downloadBlob({ ...ctx, onBytes: (receivedBytes, totalBytes) => report({ phase: "downloading", layerDigest: d.digest, receivedBytes, totalBytes }) }, parsed, d);
        report({ phase: "verifying", layerDigest: d.digest, receivedBytes: d.size, totalBytes: d.size, message: "sha256 verified" });
      };
      await download(m.config);
      const config = parseImageConfig(await this.blobs.readVerified(m.config.digest, MAX_CONFIG_BYTES), m.layers.length);
      await runLimited(m.layers, PARALLEL_DOWNLOADS, download);
      const storedRef = parsed.digest !== undefined ? `${repositoryName(parsed)}@${parsed.digest}` : name;
      const previous = await this.refs.get(storedRef);
      const record = await this.commit(storedRef, { manifest: m, manifestDigest: resolved.manifestDigest, config, indexDigest: resolved.index?.digest }, pin, report);
      // a moved tag leaves the old image dangling: collect it (layers still mounted by sandboxes are kept)
      if (previous && previous.digest !== record.digest) await pin.release().then(() => this.gc());
      return record;
    });
  }

  /** Imports an OCI image-layout tar (or a `docker save` tar) and tags it `ref`. */
  async importArchive(ref: string, input: string | Readable, opts: { onProgress?: ProgressFn } = {}): Promise<ImageRecord> {
    const parsed = parseImageRef(ref);
    await this.init();
    const report = opts.onProgress ?? (() => {});
    return this.withPin(async (pin, fresh) => {
      const verified = await importArchive({ blobs: this.blobs, pin, fresh, report }, input, parsed.tag, hostPlatform());
      const record = await this.commit(formatImageRef(parsed), verified, pin, report);
      // archives may carry other images/platforms: drop the blobs of theirs we stored and do not use
      await pin.release();
      await collectGarbage(this.layout, this.refs, this.layers, this.logger, fresh);
      return record;
    });
  }

  /** Unpacks layers (verifying diff ids), then records the ref; the pin keeps GC off until the ref exists. */
  private async commit(ref: string, v: VerifiedImage, pin: Pin, report: (p: ImageProgress) => void): Promise<ImageRecord> {
    const record = imageRecord({ ref, ...v });
    await pin.add(record.blobs, record.layers.map((l) => this.layers.id(l)));
    for (const l of record.layers) {
      if (await this.layers.isUnpacked(l)) continue;
      report({ phase: "unpacking", layerDigest: l.digest, totalBytes: l.sizeBytes });
      await this.layers.ensureUnpacked(l);
    }
    await this.refs.put(record);
    report({ phase: "done", message: `${ref} ${record.digest}` });
    return publicRecord(record);
  }

  /** Runs `work` holding a pin; on failure, blobs it newly stored and nothing else references are deleted. */
  private async withPin<T>(work: (pin: Pin, fresh: Set<string>) => Promise<T>): Promise<T> {
    const pin = new Pin(this.layout);
    const fresh = new Set<string>();
    try {
      return await work(pin, fresh);
    } catch (e) {
      await pin.release();
      if (fresh.size) await collectGarbage(this.layout, this.refs, this.layers, this.logger, fresh).catch(() => {});
      throw e;
    } finally {
      await pin.release();
    }
  }

  private async storeBytes(bytes: Buffer, digest: string, fresh: Set<string>): Promise<void> {
    if (!(await this.blobs.has(digest))) fresh.add(digest);
    await this.blobs.putBytes(bytes, digest);
  }

  /** Finds a local image by "name:tag", "name@sha256:…", or a bare "sha256:…" (manifest, index or config digest). */
  async resolveLocal(ref: string): Promise<ImageRecord | undefined> {
    const found = await this.findStored(ref);
    return found[0] && publicRecord(found[0]);
  }

  private async findStored(ref: string): Promise<StoredImage[]> {
    await this.init();
    const matches = (img: StoredImage, d: string) => img.digest === d || img.indexDigest === d || img.configDigest === d;
    if (isDigest(ref)) return (await this.refs.all()).filter((img) => matches(img, ref));
    const parsed = parseImageRef(ref);
    const exact = await this.refs.get(formatImageRef(parsed));
    if (exact) return [exact];
    if (parsed.digest === undefined) return [];
    const repo = repositoryName(parsed);
    const sameDigest = (await this.refs.all()).filter((img) => matches(img, parsed.digest!));
    return [...sameDigest.filter((img) => img.ref.startsWith(`${repo}:`) || img.ref.startsWith(`${repo}@`)), ...sameDigest];
  }

  /** The local image, else a pull. */
  async ensure(ref: string, opts: { onProgress?: ProgressFn; signal?: AbortSignal } = {}): Promise<ImageRecord> {
    const local = await this.resolveLocal(ref);
    if (local) {
      opts.onProgress?.({ phase: "done", message: `${local.ref} ${local.digest} (local)` });
      return local;
    }
    return this.pull(ref, opts);
  }

  async list(): Promise<ImageRecord[]> {
    await this.init();
    return (await this.refs.all()).map(publicRecord);
  }

  /** Removes a tag (or every tag of a digest) and garbage-collects what no image references any more. */
  async remove(refOrDigest: string): Promise<void> {
    const found = await this.findStored(refOrDigest);
    const targets = isDigest(refOrDigest) ? found : found.slice(0, 1);
    if (targets.length === 0) throw new CleanroomError("image_not_found", `no local image ${JSON.stringify(refOrDigest)}; see \`cleanroom image list\``);
    for (const img of targets) await this.refs.delete(img.ref);
    await this.gc();
  }

  /** Deletes unreferenced blobs and layer dirs (layer dirs still mounted somewhere are kept). */
  async gc(): Promise<GcResult> {
    await this.init();
    return collectGarbage(this.layout, this.refs, this.layers, this.logger);
  }

  /** Where unpacked layers live (storage accounting). */
  get layersRoot(): string {
    return this.layout.layers;
  }

  /** Unpacked layer dirs, lowest first, ready to be overlayfs lowerdirs (reverse them for the option string). */
  async layerDirs(image: ImageRecord): Promise<string[]> {
    await this.init();
    const dirs: string[] = [];
    for (const l of image.layers) dirs.push(await this.layers.ensureUnpacked(l));
    return dirs;
  }

  /** Builds (or returns the existing) Debian minbase image tagged DEFAULT_BASE_IMAGE_REF. */
  async buildBaseImage(opts: BaseImageOptions = {}): Promise<ImageRecord> {
    const ref = formatImageRef(parseImageRef(opts.ref ?? DEFAULT_BASE_IMAGE_REF));
    const existing = await this.resolveLocal(ref);
    if (existing) {
      opts.onProgress?.({ phase: "done", message: `${ref} ${existing.digest} (already built)` });
      return existing;
    }
    await this.init();
    const report = opts.onProgress ?? (() => {});
    return this.withPin(async (pin, fresh) => {
      const verified = await buildBaseImage({ layout: this.layout, blobs: this.blobs, pin, fresh, report, logger: this.logger }, opts);
      return this.commit(ref, verified, pin, report);
    });
  }
}

/** Runs `fn` over items, `limit` at a time; after a failure no new item starts, and all are settled before it throws. */
async function runLimited<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (!failed && next < items.length) {
      try {
        await fn(items[next++]!);
      } catch (e) {
        failed = true;
        throw e;
      }
    }
  });
  const results = await Promise.allSettled(workers);
  const bad = results.find((r) => r.status === "rejected");
  if (bad) throw (bad as PromiseRejectedResult).reason;
}
