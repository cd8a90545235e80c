import { lstat, readdir } from "node:fs/promises";
import { join } from "node:path";
import { describeFailure, tryCommand } from "../../host-command/index.ts";
import type { WriteScan } from "../types.ts";

/**
 * Lists a sandbox's overlay upper dir: every path the sandbox wrote since launch (a deletion of an image file
 * is a whiteout here). The caller freezes the sandbox first, so no directory can turn into a symlink under the
 * walk; entries are never followed in any case (dirent types and lstat only).
 */
export async function scanUpperDir(upper: string, maxEntries: number): Promise<WriteScan> {
  const entries = new Map<string, string>();
  const pending: string[] = [""];
  while (pending.length) {
    const rel = pending.pop()!;
    const names = await readdir(join(upper, rel), { withFileTypes: true }).catch((err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT" || err.code === "ENOTDIR") return [];
      throw err;
    });
    for (const dirent of names) {
      if (entries.size >= maxEntries) return { entries, truncated: true };
      const path = `${rel}/${dirent.name}`;
      if (dirent.isDirectory()) {
        entries.set(path, "d");
        pending.push(path);
        continue;
      }
      const st = await lstat(join(upper, path), { bigint: true }).catch(() => undefined);
      // the kernel sets ctime on every change of content or metadata; the sandbox cannot set it back
      entries.set(path, st ? `${dirent.isCharacterDevice() ? "w" : "f"}:${st.mode}:${st.size}:${st.ctimeNs}` : "gone");
    }
  }
  return { entries, truncated: false };
}

/**
 * Copies an upper dir as it is: ownership (already in the sandbox's id range), modes, times, hard links, xattrs
 * (overlay's opaque markers) and whiteout devices; symlinks are copied as symlinks, never followed.
 */
export async function copyLayer(upper: string, dest: string): Promise<void> {
  const args = ["-a", "--reflink=auto", "--no-target-directory", upper, dest];
  const r = await tryCommand("cp", args, { timeoutMs: 60 * 60_000 });
  if (r.code !== 0) throw new Error(describeFailure("cp", args, r));
}
