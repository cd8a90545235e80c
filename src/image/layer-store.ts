import { createHash, randomBytes } from "node:crypto";
import { mkdir, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import type { IdRange } from "../config/index.ts";
import { CleanroomError } from "../errors/index.ts";
import type { Logger } from "../observability/index.ts";
import { openLayerStream, unpackLayerStream, DEFAULT_UNPACK_LIMITS, type UnpackLimits } from "./layer-unpack.ts";
import type { StoreLayout } from "./store-layout.ts";

/** What unpacking needs to know about a layer. */
export interface LayerRef {
  digest: string;
  diffId: string;
}

/**
 * Short, stable directory name of an unpacked layer: the same diff id unpacked for another id
 * range is a different tree. 12 hex keeps a stack of lowerdirs well inside one page.
 */
export function layerId(diffId: string, idRange: IdRange): string {
  return createHash("sha256").update(`${diffId}|${idRange.hostBase}|${idRange.size}`).digest("hex").slice(0, 12);
}

/** Unpacked layers under layers/<id>/, each unpacked once into a temp dir and renamed into place. */
export class LayerStore {
  private readonly layout: StoreLayout;
  private readonly idRange: IdRange;
  private readonly logger: Logger;
  private readonly inFlight = new Map<string, Promise<string>>();
  limits: UnpackLimits = DEFAULT_UNPACK_LIMITS;

  constructor(layout: StoreLayout, idRange: IdRange, logger: Logger) {
    this.layout = layout;
    this.idRange = idRange;
    this.logger = logger;
  }

  id(layer: LayerRef): string {
    return layerId(layer.diffId, this.idRange);
  }

  dir(layer: LayerRef): string {
    return this.layout.layerPath(this.id(layer));
  }

  async isUnpacked(layer: LayerRef): Promise<boolean> {
    return stat(this.dir(layer)).then((s) => s.isDirectory(), () => false);
  }

  /** The layer's directory, unpacking it first if needed (concurrent callers share one unpack). */
  ensureUnpacked(layer: LayerRef): Promise<string> {
    const id = this.id(layer);
    let p = this.inFlight.get(id);
    if (!p) {
      p = this.unpack(layer).finally(() => this.inFlight.delete(id));
      this.inFlight.set(id, p);
    }
    return p;
  }

  private async unpack(layer: LayerRef): Promise<string> {
    const final = this.dir(layer);
    if (await this.isUnpacked(layer)) return final;
    const blob = this.layout.blobPath(layer.digest);
    if (!(await stat(blob).then((s) => s.isFile(), () => false))) {
      throw new CleanroomError("image_not_found", `layer blob ${layer.digest} is missing from the store; pull the image again`);
    }
    // temp name carries our pid so GC can tell an abandoned unpack from a live one
    const tmp = join(this.layout.layers, `.tmp-${this.id(layer)}.${process.pid}.${randomBytes(3).toString("hex")}`);
    await mkdir(tmp, { mode: 0o700 });
    const started = Date.now();
    try {
      const result = await unpackLayerStream(await openLayerStream(blob), tmp, this.idRange, this.limits);
      if (result.diffId !== layer.diffId) {
        throw new CleanroomError("image_invalid", `layer ${layer.digest} uncompresses to ${result.diffId}, but the image config says ${layer.diffId}; the image is corrupt or tampered`);
      }
      for (const s of result.skipped.slice(0, 50)) this.logger.warn({ layer: layer.digest, path: s.path, reason: s.reason }, "layer entry skipped");
      try {
        await rename(tmp, final);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        // another process finished the same layer first: theirs is as good as ours
        if (code !== "ENOTEMPTY" && code !== "EEXIST") throw e;
        await rm(tmp, { recursive: true, force: true });
      }
      this.logger.debug({ layer: layer.digest, entries: result.entries, bytes: result.bytes, ms: Date.now() - started }, "layer unpacked");
      return final;
    } catch (e) {
      await rm(tmp, { recursive: true, force: true });
      throw e;
    }
  }
}
