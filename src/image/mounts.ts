import { readFile, rm } from "node:fs/promises";
import { runCommand } from "../host-command/index.ts";

/** Mount points at or under `dir`, deepest first (from /proc/self/mountinfo, octal escapes decoded). */
export async function mountsUnder(dir: string): Promise<string[]> {
  const info = await readFile("/proc/self/mountinfo", "utf8").catch(() => "");
  const prefix = dir.endsWith("/") ? dir : `${dir}/`;
  const out: string[] = [];
  for (const line of info.split("\n")) {
    const field = line.split(" ")[4];
    if (!field) continue;
    const mp = field.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (mp === dir || mp.startsWith(prefix)) out.push(mp);
  }
  return out.sort((a, b) => b.length - a.length);
}

/**
 * Removes a directory tree that a chroot tool may have left mounts in (debootstrap mounts /proc,
 * /sys and may bind /dev entries). Everything mounted below is detached first; a recursive delete
 * that crossed into a bind mount of the host's /dev would destroy host files.
 */
export async function removeTreeSafely(dir: string): Promise<void> {
  for (let round = 0; round < 3; round++) {
    const mounts = await mountsUnder(dir);
    if (mounts.length === 0) {
      await rm(dir, { recursive: true, force: true });
      return;
    }
    for (const m of mounts) await runCommand("umount", ["-l", "--", m], { timeoutMs: 30_000 }).catch(() => {});
  }
  throw new Error(`cannot remove ${dir}: mounts under it could not be detached`);
}
