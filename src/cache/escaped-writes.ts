/**
 * Escaped writes: what a block changed outside its declared outputs. Restoring only the outputs would then give a
 * later sandbox a different filesystem than running the block did, so such a block is not published.
 */
import type { WriteScan } from "../backends/index.ts";

/**
 * Scratch space whose contents are not part of a prepared environment: writes there never count. Everything
 * else (the home directory, /etc, /usr, /var, the repository) must be a declared output to be written.
 */
export const SCRATCH_PATHS = ["/tmp", "/var/tmp", "/run", "/var/run", "/dev", "/proc", "/sys", "/var/cache/apt/archives/partial"] as const;

const MAX_REPORTED = 20;

/**
 * Paths written between two scans that lie outside `outputs` and scratch space: new or changed non-directories
 * (a whiteout is a deletion), deletions of earlier writes, and new empty directories. A directory that holds
 * entries is seen through them. At most 20 are listed; `count` has them all.
 */
export function escapedWrites(before: WriteScan, after: WriteScan, outputs: readonly string[]): { paths: string[]; count: number } {
  const inside = (path: string, roots: readonly string[]) => roots.some((root) => path === root || path.startsWith(`${root}/`));
  const escaped: string[] = [];
  const consider = (path: string) => {
    if (!inside(path, outputs) && !inside(path, SCRATCH_PATHS)) escaped.push(path);
  };
  // a directory copied up because something under it was written is judged by what was written
  const holdsEntries = new Set<string>();
  for (const path of after.entries.keys()) for (const dir of ancestors(path)) holdsEntries.add(dir);
  for (const [path, signature] of after.entries) {
    const earlier = before.entries.get(path);
    if (signature === "d") {
      if (earlier === undefined && !holdsEntries.has(path)) consider(path);
    } else if (earlier !== signature) consider(path);
  }
  for (const path of before.entries.keys()) if (!after.entries.has(path)) consider(path);
  // a new directory stands for everything under it
  const reported = new Set<string>();
  for (const path of escaped.sort()) if (!ancestors(path).some((a) => reported.has(a))) reported.add(path);
  return { paths: [...reported].slice(0, MAX_REPORTED), count: escaped.length };
}

function ancestors(path: string): string[] {
  const parts = path.split("/");
  return parts.slice(1, -1).map((_, i) => parts.slice(0, i + 2).join("/"));
}
