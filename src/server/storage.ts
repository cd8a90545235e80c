/**
 * `system df` and `system prune`: the host storage of every part (sandboxes, snapshots, block caches, images and
 * their unpacked layers, the gateway's mirrors and content cache, execution artifacts), what is in use, and what a
 * prune with a given selection removes. Everything a live sandbox uses is never selected.
 */
import { readdir, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { diskUsage } from "../cache/index.ts";
import { DEFAULT_BASE_IMAGE_REF } from "../image/index.ts";
import type { SandboxRecord } from "../sandbox/index.ts";
import type { DaemonContext } from "./daemon-context.ts";

export const STORAGE_CATEGORIES = [
  "sandboxes", "snapshots", "stage_caches", "images", "rootfs_cache", "repository_mirrors", "content_cache", "execution_artifacts",
] as const;
export type StorageCategory = (typeof STORAGE_CATEGORIES)[number];

export interface StorageSelection {
  /** everything unused, not only leftovers */
  all: boolean;
  olderThanSeconds: number;
}

/** One stored thing and whether a prune may take it. */
export interface StoredItem {
  category: StorageCategory;
  id: string;
  bytes: number;
  lastUsedAt: string;
  /** a live sandbox uses it (or it is kept on purpose): never pruned */
  active: boolean;
  /** a leftover that the default prune takes; others go only with `all` */
  leftover: boolean;
  remove(): Promise<void>;
}

export interface CategoryUsage {
  category: StorageCategory;
  count: number;
  bytes: number;
  active: number;
  reclaimableCount: number;
  reclaimableBytes: number;
  /** with `all` */
  allReclaimableCount: number;
  allReclaimableBytes: number;
}

/** Whether a prune with `selection` takes `item`. */
export function isSelected(item: Pick<StoredItem, "active" | "leftover" | "lastUsedAt">, selection: StorageSelection, now = Date.now()): boolean {
  if (item.active || !(item.leftover || selection.all)) return false;
  return selection.olderThanSeconds === 0 || Date.parse(item.lastUsedAt) <= now - selection.olderThanSeconds * 1000;
}

/** Storage by category, with what `selection` and the same selection with `all` would free (each size measured once). */
export async function storageUsage(ctx: DaemonContext, selection: StorageSelection): Promise<CategoryUsage[]> {
  const sizeOf = memoizedSizes();
  const everything = { ...selection, all: true };
  // which block outputs and images stay in use depends on which snapshots the selection keeps
  const items = await inventory(ctx, selection, sizeOf);
  const allItems = await inventory(ctx, everything, sizeOf);
  return STORAGE_CATEGORIES.map((category) => {
    const mine = items.filter((item) => item.category === category);
    const reclaimable = mine.filter((item) => isSelected(item, selection));
    const allReclaimable = allItems.filter((item) => item.category === category && isSelected(item, everything));
    return {
      category,
      count: mine.length,
      bytes: sum(mine),
      active: mine.filter((item) => item.active).length,
      reclaimableCount: reclaimable.length,
      reclaimableBytes: sum(reclaimable),
      allReclaimableCount: allReclaimable.length,
      allReclaimableBytes: sum(allReclaimable),
    };
  });
}

/** Removes what `selection` takes, in an order that frees dependents first (sandboxes before their artifacts, snapshots before the caches they hold). */
export async function pruneStorage(ctx: DaemonContext, selection: StorageSelection, dryRun: boolean): Promise<StoredItem[]> {
  const selected = (await inventory(ctx, selection, memoizedSizes())).filter((item) => isSelected(item, selection));
  if (dryRun) return selected;
  const removed: StoredItem[] = [];
  for (const item of selected) {
    await item.remove();
    removed.push(item);
  }
  // layers and blobs no image references any more (also what the removals above left dangling)
  await ctx.images.gc();
  return removed;
}

/** Everything stored, with snapshots' and sandboxes' uses resolved. */
async function inventory(ctx: DaemonContext, selection: StorageSelection, sizeOf: (path: string) => Promise<number>): Promise<StoredItem[]> {
  const { supervisor, blockCache, images } = ctx;
  const sandboxes = supervisor.allSandboxRecords();
  const live = sandboxes.filter(isLive);
  const liveIds = new Set(live.map((s) => s.id));
  const items: StoredItem[] = [];

  for (const sandbox of sandboxes) {
    items.push({
      category: "sandboxes", id: sandbox.id, lastUsedAt: sandbox.updatedAt, active: isLive(sandbox), leftover: true,
      bytes: await sizeOf(join(ctx.stateDir, "sandboxes", sandbox.id)),
      remove: () => supervisor.forgetSandbox(sandbox.id),
    });
  }

  const snapshotItems = supervisor.listSnapshots().map((snapshot): StoredItem & { cacheEntries: string[]; imageDigest: string } => ({
    category: "snapshots", id: snapshot.id, bytes: snapshot.diskBytes, lastUsedAt: snapshot.createdAt, leftover: false,
    active: live.some((s) => s.fromSnapshot === snapshot.id),
    cacheEntries: snapshot.cacheEntries, imageDigest: snapshot.imageDigest,
    remove: async () => void (await supervisor.deleteSnapshot(snapshot.id)),
  }));
  items.push(...snapshotItems);
  // what a snapshot that stays needs, stays
  const keptSnapshots = snapshotItems.filter((item) => !isSelected(item, selection));

  const entriesInUse = new Set([...live.flatMap((s) => s.cacheEntries ?? []), ...keptSnapshots.flatMap((s) => s.cacheEntries)]);
  const records = blockCache.list();
  for (const record of records) {
    const newest = records.filter((r) => r.repositoryUrl === record.repositoryUrl && r.parts.stage === record.parts.stage && r.parts.name === record.parts.name)
      .every((r) => r.createdAt <= record.createdAt);
    items.push({
      category: "stage_caches", id: `${record.parts.stage}/${record.parts.name}@${record.id}`, bytes: record.diskBytes, lastUsedAt: record.lastUsedAt,
      active: entriesInUse.has(record.id), leftover: !newest,
      remove: () => blockCache.remove(record.id),
    });
  }

  const digestsInUse = new Set([...live.map((s) => s.imageDigest), ...keptSnapshots.map((s) => s.imageDigest)]);
  for (const image of await images.list()) {
    items.push({
      category: "images", id: image.ref, bytes: image.sizeBytes, lastUsedAt: image.createdAt, leftover: false,
      // rebuilding the default image takes minutes: `image rm` removes it on purpose
      active: digestsInUse.has(image.digest) || image.ref === DEFAULT_BASE_IMAGE_REF,
      remove: () => images.remove(image.ref),
    });
  }
  items.push({ category: "rootfs_cache", id: "unpacked image layers", bytes: await sizeOf(images.layersRoot), lastUsedAt: new Date().toISOString(), active: true, leftover: false, remove: async () => undefined });

  for (const name of await readdir(ctx.gateway.cacheDirs.mirrors).catch(() => [] as string[])) {
    if (!name.endsWith(".git")) continue;
    const dir = join(ctx.gateway.cacheDirs.mirrors, name);
    items.push({
      category: "repository_mirrors", id: name, bytes: await sizeOf(dir), lastUsedAt: await modifiedAt(dir), active: false, leftover: false,
      remove: () => removeDir(dir),
    });
  }
  const content = ctx.gateway.cacheDirs.content;
  items.push({
    category: "content_cache", id: "gateway content", bytes: await sizeOf(content), lastUsedAt: await modifiedAt(content), active: false, leftover: false,
    remove: async () => {
      for (const name of await readdir(content).catch(() => [] as string[])) await rm(join(content, name), { force: true });
    },
  });

  const executionsDir = join(ctx.stateDir, "executions");
  const owners = new Map(supervisor.executions.list(undefined, true).map((e) => [e.id, e.sandboxId] as const));
  for (const name of await readdir(executionsDir).catch(() => [] as string[])) {
    const dir = join(executionsDir, name);
    const owner = owners.get(name);
    items.push({
      category: "execution_artifacts", id: name, bytes: await sizeOf(dir), lastUsedAt: await modifiedAt(dir),
      active: owner !== undefined && liveIds.has(owner), leftover: true,
      remove: () => rm(dir, { recursive: true, force: true }),
    });
  }
  return items;
}

function isLive(sandbox: SandboxRecord): boolean {
  return sandbox.status !== "STOPPED" && sandbox.status !== "FAILED";
}

function sum(items: StoredItem[]): number {
  return items.reduce((total, item) => total + item.bytes, 0);
}

/** Allocated bytes under a path (0 when it does not exist), each path measured once per request. */
function memoizedSizes(): (path: string) => Promise<number> {
  const sizes = new Map<string, Promise<number>>();
  return (path) => {
    let size = sizes.get(path);
    if (!size) {
      size = stat(path).then(() => diskUsage(path), () => 0);
      sizes.set(path, size);
    }
    return size;
  };
}

async function modifiedAt(path: string): Promise<string> {
  return stat(path).then((s) => s.mtime.toISOString(), () => new Date(0).toISOString());
}

async function removeDir(dir: string): Promise<void> {
  const trash = `${dir}.removing`;
  await rename(dir, trash);
  await rm(trash, { recursive: true, force: true });
}
