import { readFile } from "node:fs/promises";
import { dirname, relative, sep } from "node:path";
import { describeFailure, tryCommand } from "../../host-command/index.ts";

/** mount(2) copies at most one page of options, NUL included. */
const maxMountDataBytes = 4095;

export interface OverlayMountPlan {
  /** the -o value */
  options: string;
  /** directory the mount runs in: lower dirs may be given relative to it to fit into one page */
  cwd: string | undefined;
}

/** A path the overlay option parser would split or unescape; such paths are refused, not escaped. */
function hasOverlaySpecialChars(p: string): boolean {
  return /[:,\\\n\r\0]/.test(p);
}

/**
 * Plans the overlay options: lowerdir is highest layer first. When the absolute form exceeds a page,
 * lower dirs are given relative to their common parent (the mount runs there); past that, it fails.
 */
export function planOverlayMount(lowerDirsLowestFirst: readonly string[], upperDir: string, workDir: string): OverlayMountPlan {
  for (const p of [...lowerDirsLowestFirst, upperDir, workDir]) {
    if (hasOverlaySpecialChars(p)) throw new Error(`overlay path ${JSON.stringify(p)} contains one of : , \\ or a control character`);
  }
  const highestFirst = [...lowerDirsLowestFirst].reverse();
  const render = (lowers: string[]) => `lowerdir=${lowers.join(":")},upperdir=${upperDir},workdir=${workDir}`;
  const absolute = render(highestFirst);
  if (Buffer.byteLength(absolute) <= maxMountDataBytes) return { options: absolute, cwd: undefined };
  const base = commonParent(highestFirst);
  const relativeOptions = render(highestFirst.map((p) => relative(base, p) || "."));
  if (base !== "/" && Buffer.byteLength(relativeOptions) <= maxMountDataBytes) return { options: relativeOptions, cwd: base };
  throw new Error(
    `${lowerDirsLowestFirst.length} layers do not fit into one overlay mount: the options take ${Buffer.byteLength(relativeOptions)} bytes, ` +
      `the kernel accepts ${maxMountDataBytes}; flatten the image or shorten the layer store path`,
  );
}

function commonParent(paths: readonly string[]): string {
  let base = dirname(paths[0] ?? "/");
  while (base !== "/" && !paths.every((p) => p.startsWith(base + sep))) base = dirname(base);
  return base;
}

/** Mounts the planned overlay at `target` as host root (one `mount` process: Node has no mount(2)). */
export async function mountOverlay(plan: OverlayMountPlan, target: string): Promise<void> {
  const args = ["-n", "-t", "overlay", "overlay", "-o", plan.options, target];
  const r = await tryCommand("mount", args, { timeoutMs: 10_000, ...(plan.cwd ? { cwd: plan.cwd } : {}) });
  if (r.code !== 0) throw new Error(describeFailure("mount", args, r));
}

/** Unmounts `target`; when busy, detaches it lazily (the kernel frees it once the last user is gone). */
export async function unmount(target: string): Promise<void> {
  const r = await tryCommand("umount", ["-n", target], { timeoutMs: 10_000 });
  if (r.code === 0) return;
  const lazy = await tryCommand("umount", ["-n", "-l", target], { timeoutMs: 10_000 });
  if (lazy.code !== 0 && (await isMountPoint(target))) throw new Error(describeFailure("umount", ["-l", target], lazy));
}

export interface MountEntry {
  mountPoint: string;
  fsType: string;
  source: string;
  superOptions: string;
}

/** The mounts of the daemon's mount namespace, from /proc/self/mountinfo. */
export async function readMounts(): Promise<MountEntry[]> {
  const text = await readFile("/proc/self/mountinfo", "utf8");
  const mounts: MountEntry[] = [];
  for (const line of text.split("\n")) {
    const fields = line.split(" ");
    const dash = fields.indexOf("-");
    if (dash < 0 || fields.length < dash + 4) continue;
    mounts.push({
      mountPoint: unescapeMountField(fields[4] ?? ""),
      fsType: fields[dash + 1] ?? "",
      source: unescapeMountField(fields[dash + 2] ?? ""),
      superOptions: fields[dash + 3] ?? "",
    });
  }
  return mounts;
}

export async function isMountPoint(path: string): Promise<boolean> {
  return (await readMounts()).some((m) => m.mountPoint === path);
}

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
function unescapeMountField(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}
