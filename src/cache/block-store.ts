import { randomBytes } from "node:crypto";
import { chmod, mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { runCommand } from "../host-command/index.ts";
import type { Logger } from "../observability/index.ts";
import type { BlockKeyParts } from "./block-key.ts";

/** A published block output: the record beside its layer dir. */
export interface BlockRecord {
  /** short directory name under blocks/ */
  id: string;
  key: string;
  parts: BlockKeyParts;
  repositoryUrl: string;
  /** guest paths the layer holds (declared outputs that existed when the block finished) */
  paths: string[];
  /** file content bytes archived */
  bytes: number;
  entries: number;
  /** what the layer takes on the host's disk */
  diskBytes: number;
  createdAt: string;
  lastUsedAt: string;
}

const RECORD = "record.json";
const LAYER = "layer";
const ID_HEX = 20;
const GiB = 1024 ** 3;

/** Cleanroom's default floor for a cache output volume (`minimum_cache_output_volume_bytes`). */
export const DEFAULT_MINIMUM_OUTPUT_BYTES = 16 * GiB;

/**
 * How much a block may publish: the floor, or room for the previous successful output of the same block plus
 * headroom, whichever is larger (Cleanroom sizes its sparse output volumes the same way).
 */
export function outputCapacityBytes(floor: number, previousBytes: number | undefined): number {
  const hinted = previousBytes === undefined ? 0 : Math.ceil(previousBytes * 1.25) + GiB;
  return Math.max(floor, hinted);
}

/**
 * Published block outputs on this host: `<root>/<id>/{layer/,record.json}`. A layer is an overlay lower dir with
 * ids shifted into the sandbox range, mounted read-only under the image layers' top on a hit. Entries appear
 * whole (unpacked into a temp dir, renamed into place) and are immutable afterwards.
 */
export class BlockCache {
  readonly root: string;
  readonly #log: Logger;
  readonly #records = new Map<string, BlockRecord>();

  private constructor(root: string, logger: Logger) {
    this.root = root;
    this.#log = logger;
  }

  /** Opens the store: abandoned temp dirs from a crash are removed, the records are read. */
  static async open(root: string, logger: Logger): Promise<BlockCache> {
    const cache = new BlockCache(root, logger);
    // 0711: the sandbox's (shifted) root walks through to the layers it mounts, but cannot list them
    await mkdir(root, { recursive: true, mode: 0o711 });
    await chmod(root, 0o711);
    for (const name of await readdir(root)) {
      if (name.startsWith(".tmp-") || name.startsWith(".trash-")) {
        await rm(join(root, name), { recursive: true, force: true });
        continue;
      }
      const record = await readFile(join(root, name, RECORD), "utf8").then((text) => JSON.parse(text) as BlockRecord, () => undefined);
      if (record?.id === name) cache.#records.set(record.key, record);
      else {
        logger.warn({ entry: name }, "removing a block cache entry without a valid record");
        await rm(join(root, name), { recursive: true, force: true });
      }
    }
    return cache;
  }

  /** The published outputs for `key`, marked as used now. */
  async lookup(key: string): Promise<{ record: BlockRecord; layerDir: string } | undefined> {
    const record = this.#records.get(key);
    if (!record) return undefined;
    record.lastUsedAt = new Date().toISOString();
    await this.#writeRecord(join(this.root, record.id), record).catch((err) => this.#log.warn({ err, entry: record.id }, "could not note a block cache hit"));
    return { record, layerDir: this.layerDir(record) };
  }

  /** The newest record of the same block of the same repository: what a miss is compared with, and its size hint. */
  previous(repositoryUrl: string, stage: string, name: string): BlockRecord | undefined {
    let newest: BlockRecord | undefined;
    for (const record of this.#records.values()) {
      if (record.repositoryUrl !== repositoryUrl || record.parts.stage !== stage || record.parts.name !== name) continue;
      if (!newest || record.createdAt > newest.createdAt) newest = record;
    }
    return newest;
  }

  layerDir(record: Pick<BlockRecord, "id">): string {
    return join(this.root, record.id, LAYER);
  }

  /**
   * Publishes outputs: `fill` writes the layer into an empty dir; only a complete fill becomes an entry. When the
   * same key was published meanwhile (another sandbox), that one is kept. A failed fill leaves nothing behind.
   */
  async publish(entry: { key: string; parts: BlockKeyParts; repositoryUrl: string; paths: string[] }, fill: (layerDir: string) => Promise<{ bytes: number; entries: number }>): Promise<BlockRecord> {
    const existing = this.#records.get(entry.key);
    if (existing) return existing;
    const id = entry.key.slice("sha256:".length, "sha256:".length + ID_HEX);
    const tmp = join(this.root, `.tmp-${id}.${process.pid}.${randomBytes(3).toString("hex")}`);
    await mkdir(tmp, { mode: 0o711 });
    try {
      const layer = join(tmp, LAYER);
      await mkdir(layer, { mode: 0o700 });
      const filled = await fill(layer);
      const now = new Date().toISOString();
      const record: BlockRecord = { id, ...entry, ...filled, diskBytes: await diskUsage(tmp), createdAt: now, lastUsedAt: now };
      await this.#writeRecord(tmp, record);
      await rename(tmp, join(this.root, id)).catch(async (err: NodeJS.ErrnoException) => {
        if (err.code !== "ENOTEMPTY" && err.code !== "EEXIST") throw err;
        // a key prefix already taken by another key is not worth a second naming scheme: the older entry stays
        await rm(tmp, { recursive: true, force: true });
      });
      if (!this.#records.has(entry.key) && (await readRecordKey(join(this.root, id))) === entry.key) this.#records.set(entry.key, record);
      return this.#records.get(entry.key) ?? record;
    } catch (err) {
      await rm(tmp, { recursive: true, force: true });
      throw err;
    }
  }

  list(): BlockRecord[] {
    return [...this.#records.values()].sort((a, b) => (a.createdAt < b.createdAt ? -1 : 1));
  }

  /** Removes an entry (the caller makes sure no live sandbox has its layer mounted). */
  async remove(id: string): Promise<void> {
    const record = [...this.#records.values()].find((r) => r.id === id);
    if (!record) return;
    this.#records.delete(record.key);
    const trash = join(this.root, `.trash-${id}.${randomBytes(3).toString("hex")}`);
    await rename(join(this.root, id), trash);
    await rm(trash, { recursive: true, force: true });
  }

  async #writeRecord(dir: string, record: BlockRecord): Promise<void> {
    const tmp = join(dir, `.${RECORD}.${randomBytes(3).toString("hex")}`);
    await writeFile(tmp, JSON.stringify(record), { mode: 0o600 });
    await rename(tmp, join(dir, RECORD));
  }
}

async function readRecordKey(dir: string): Promise<string | undefined> {
  return readFile(join(dir, RECORD), "utf8").then((text) => (JSON.parse(text) as BlockRecord).key, () => undefined);
}

/** Allocated bytes under dir, hard links counted once, symlinks not followed (`du`). */
export async function diskUsage(dir: string): Promise<number> {
  const { stdout } = await runCommand("du", ["-s", "-x", "-B1", dir], { timeoutMs: 120_000, maxOutputBytes: 4096 });
  return Number(stdout.split("\t")[0]) || 0;
}
