import { lchownSync, lstatSync, mkdirSync } from "node:fs";
import { join } from "node:path";

export const MAX_PATH_BYTES = 4096;
const MAX_COMPONENT_BYTES = 255;

export type NormalizedPath = { ok: true; rel: string } | { ok: false; reason: string };

/**
 * Normalizes a tar entry path to a relative path inside the layer ("" is the layer root).
 * Leading "/" and "./" are stripped (absolute paths are confined, not honoured); any ".."
 * component, NUL byte or over-long name refuses the entry.
 */
export function normalizeEntryPath(p: string): NormalizedPath {
  if (p.includes("\0")) return { ok: false, reason: "path contains a NUL byte" };
  if (Buffer.byteLength(p) > MAX_PATH_BYTES) return { ok: false, reason: `path longer than ${MAX_PATH_BYTES} bytes` };
  const parts: string[] = [];
  for (const c of p.split("/")) {
    if (c === "" || c === ".") continue;
    if (c === "..") return { ok: false, reason: "path contains a '..' component" };
    if (Buffer.byteLength(c) > MAX_COMPONENT_BYTES) return { ok: false, reason: `path component longer than ${MAX_COMPONENT_BYTES} bytes` };
    parts.push(c);
  }
  return { ok: true, rel: parts.join("/") };
}

export function parentOf(rel: string): string {
  const i = rel.lastIndexOf("/");
  return i < 0 ? "" : rel.slice(0, i);
}

export function baseOf(rel: string): string {
  return rel.slice(rel.lastIndexOf("/") + 1);
}

/** Thrown when an entry would be written through a symlink or non-directory in its parent path. */
export class UnsafePathError extends Error {}

/**
 * Directories of one layer under construction, resolved without ever following a symlink:
 * every parent component is lstat'ed (or known, because we made it) and must be a real directory.
 * Missing parents are created 0755 owned by the sandbox's root.
 */
export class ConfinedTree {
  readonly root: string;
  private readonly knownDirs = new Set<string>([""]);
  private readonly rootUid: number;
  private readonly rootGid: number;

  constructor(root: string, rootUid: number, rootGid: number) {
    this.root = root;
    this.rootUid = rootUid;
    this.rootGid = rootGid;
  }

  full(rel: string): string {
    return rel === "" ? this.root : join(this.root, rel);
  }

  /** Ensures every component of `dirRel` is a real directory inside the root, creating missing ones. */
  ensureDir(dirRel: string): void {
    if (this.knownDirs.has(dirRel)) return;
    let cur = "";
    for (const c of dirRel.split("/")) {
      cur = cur === "" ? c : `${cur}/${c}`;
      if (this.knownDirs.has(cur)) continue;
      const full = this.full(cur);
      const st = lstatSync(full, { throwIfNoEntry: false });
      if (!st) {
        mkdirSync(full, { mode: 0o755 });
        lchownSync(full, this.rootUid, this.rootGid);
        this.knownDirs.add(cur);
        continue;
      }
      if (!st.isDirectory()) throw new UnsafePathError(`${cur} is ${st.isSymbolicLink() ? "a symlink" : "not a directory"}; refusing to write through it`);
      this.knownDirs.add(cur);
    }
  }

  markDir(rel: string): void {
    this.knownDirs.add(rel);
  }

  /**
   * Called when the directory `rel` was removed: forget every cached directory. Dropping the whole
   * cache keeps a hostile layer that removes many directories linear (re-lstat) instead of quadratic.
   */
  forget(rel: string): void {
    if (!this.knownDirs.has(rel)) return;
    this.knownDirs.clear();
    this.knownDirs.add("");
  }
}
