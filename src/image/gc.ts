import { readdir, readFile, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "../observability/index.ts";
import type { LayerStore } from "./layer-store.ts";
import { livePins, type RefIndex } from "./ref-index.ts";
import { removeTreeSafely } from "./mounts.ts";
import { pidAlive, type StoreLayout } from "./store-layout.ts";

const PARTIAL_KEEP_MS = 24 * 3600_000;

export interface GcResult {
  blobsRemoved: number;
  layersRemoved: number;
}

/** Layer dirs that some overlay mount on this host currently uses (never delete those). */
async function mountedPaths(): Promise<string> {
  return readFile("/proc/self/mountinfo", "utf8").catch(() => "");
}

function isMounted(mountinfo: string, dir: string): boolean {
  let i = mountinfo.indexOf(dir);
  while (i >= 0) {
    const next = mountinfo[i + dir.length];
    if (next === undefined || next === ":" || next === "," || next === " " || next === "\n" || next === "/") return true;
    i = mountinfo.indexOf(dir, i + 1);
  }
  return false;
}

/**
 * Deletes blobs and unpacked layers no image references. Reads pins before refs: a pull writes
 * its ref before releasing its pin, so everything it needs is covered by one or the other.
 * `onlyBlobs`, when given, limits blob deletion to those digests (cleanup after a failed pull).
 */
export async function collectGarbage(layout: StoreLayout, refs: RefIndex, layers: LayerStore, logger: Logger, onlyBlobs?: Set<string>): Promise<GcResult> {
  const pins = await livePins(layout);
  const images = await refs.all();
  const keepBlobs = new Set(pins.blobs);
  const keepLayers = new Set(pins.layers);
  for (const img of images) {
    for (const b of img.blobs) keepBlobs.add(b);
    for (const l of img.layers) keepLayers.add(layers.id(l));
  }
  let blobsRemoved = 0;
  const candidates = onlyBlobs ? [...onlyBlobs].map((d) => d.slice(7)) : await readdir(layout.blobs).catch(() => [] as string[]);
  for (const hex of candidates) {
    if (!/^[a-f0-9]{64}$/.test(hex) || keepBlobs.has(`sha256:${hex}`)) continue;
    await rm(join(layout.blobs, hex), { force: true });
    blobsRemoved++;
  }
  let layersRemoved = 0;
  if (!onlyBlobs) {
    const mountinfo = await mountedPaths();
    for (const name of await readdir(layout.layers).catch(() => [] as string[])) {
      const dir = join(layout.layers, name);
      const tmp = /^\.tmp-[a-f0-9]+\.(\d+)\./.exec(name);
      if (tmp) {
        if (!pidAlive(Number(tmp[1]))) await rm(dir, { recursive: true, force: true });
        continue;
      }
      if (!/^[a-f0-9]{12}$/.test(name) || keepLayers.has(name)) continue;
      if (isMounted(mountinfo, dir)) {
        logger.warn({ layer_dir: dir }, "unreferenced layer is still mounted; keeping it");
        continue;
      }
      await rm(dir, { recursive: true, force: true });
      layersRemoved++;
    }
    await removeStaleTemps(layout);
  }
  if (blobsRemoved || layersRemoved) logger.info({ blobs_removed: blobsRemoved, layers_removed: layersRemoved }, "image store garbage collected");
  return { blobsRemoved, layersRemoved };
}

/** Temp files and build dirs of dead processes; their partial downloads are kept a day for resuming. */
async function removeStaleTemps(layout: StoreLayout): Promise<void> {
  for (const name of await readdir(layout.tmp).catch(() => [] as string[])) {
    const m = /\.(\d+)\.(partial|[a-f0-9]{8})$/.exec(name);
    if (!m || pidAlive(Number(m[1]))) continue;
    const path = join(layout.tmp, name);
    if (m[2] === "partial") {
      const s = await stat(path).catch(() => undefined);
      if (s && Date.now() - s.mtimeMs < PARTIAL_KEEP_MS) continue;
    }
    await removeTreeSafely(path);
  }
}
