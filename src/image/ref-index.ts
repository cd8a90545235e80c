import { randomBytes } from "node:crypto";
import { readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import type { ImageRecord } from "./image-types.ts";
import { pidAlive, writeFileAtomic, type StoreLayout } from "./store-layout.ts";

/** What a ref file holds: the public record plus what GC and digest lookups need. */
export interface StoredImage extends ImageRecord {
  /** the index/manifest list digest the image was chosen from, if any */
  indexDigest?: string;
  /** every blob this image needs kept: manifests, config, layers */
  blobs: string[];
}

const MAX_REF_FILE_BYTES = 1 << 20;

/** Tags → images, one small JSON file per ref so two daemons never rewrite each other's entries. */
export class RefIndex {
  private readonly layout: StoreLayout;
  constructor(layout: StoreLayout) {
    this.layout = layout;
  }

  async put(image: StoredImage): Promise<void> {
    await writeFileAtomic(this.layout.refPath(image.ref), `${JSON.stringify(image)}\n`, 0o600);
  }

  async get(ref: string): Promise<StoredImage | undefined> {
    const img = await readRefFile(this.layout.refPath(ref));
    return img && img.ref === ref ? img : undefined;
  }

  async all(): Promise<StoredImage[]> {
    const names = await readdir(this.layout.refs).catch(() => [] as string[]);
    const out: StoredImage[] = [];
    for (const n of names) {
      if (!/^[a-f0-9]{32}\.json$/.test(n)) continue;
      const img = await readRefFile(join(this.layout.refs, n));
      if (img) out.push(img);
    }
    return out.sort((a, b) => a.ref.localeCompare(b.ref));
  }

  async delete(ref: string): Promise<void> {
    await rm(this.layout.refPath(ref), { force: true });
  }
}

async function readRefFile(path: string): Promise<StoredImage | undefined> {
  try {
    const text = await readFile(path, "utf8");
    if (text.length > MAX_REF_FILE_BYTES) return undefined;
    const img = JSON.parse(text) as StoredImage;
    return typeof img.ref === "string" && typeof img.digest === "string" && Array.isArray(img.layers) && Array.isArray(img.blobs) ? img : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Digests and layer ids an in-flight pull/import/build holds: pins/<pid>-<random>.json. GC keeps
 * everything pinned by a live process, so it can run while another daemon is mid-pull.
 */
export class Pin {
  private readonly path: string;
  private readonly blobs = new Set<string>();
  private readonly layers = new Set<string>();

  constructor(layout: StoreLayout) {
    this.path = join(layout.pins, `${process.pid}-${randomBytes(4).toString("hex")}.json`);
  }

  async add(blobs: string[], layerIds: string[] = []): Promise<void> {
    for (const b of blobs) this.blobs.add(b);
    for (const l of layerIds) this.layers.add(l);
    await writeFileAtomic(this.path, JSON.stringify({ pid: process.pid, blobs: [...this.blobs], layers: [...this.layers] }), 0o600);
  }

  async release(): Promise<void> {
    await rm(this.path, { force: true });
  }
}

/** Everything pinned by live processes; pins of dead processes are deleted on the way. */
export async function livePins(layout: StoreLayout): Promise<{ blobs: Set<string>; layers: Set<string> }> {
  const blobs = new Set<string>();
  const layers = new Set<string>();
  const names = await readdir(layout.pins).catch(() => [] as string[]);
  for (const n of names) {
    const m = /^(\d+)-[a-f0-9]+\.json$/.exec(n);
    if (!m) continue;
    if (!pidAlive(Number(m[1]))) {
      await rm(join(layout.pins, n), { force: true });
      continue;
    }
    try {
      const pin = JSON.parse(await readFile(join(layout.pins, n), "utf8")) as { blobs?: string[]; layers?: string[] };
      for (const b of pin.blobs ?? []) blobs.add(b);
      for (const l of pin.layers ?? []) layers.add(l);
    } catch {
      // being rewritten right now; rename makes that atomic, so a read failure means it was just released
    }
  }
  return { blobs, layers };
}
