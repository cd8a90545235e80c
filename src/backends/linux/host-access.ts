import { access, readFile, stat } from "node:fs/promises";
import { dirname } from "node:path";

/**
 * runc sets up the rootfs and the agent bind mount as the sandbox's root, which on the host is an
 * unprivileged uid owning none of our dirs: every directory on those paths needs the "others" x bit.
 * Returns the dirs that lack it (closest to `/` first).
 */
export async function untraversableAncestors(path: string): Promise<string[]> {
  const dirs: string[] = [];
  for (let d = dirname(path); ; d = dirname(d)) {
    dirs.unshift(d);
    if (d === dirname(d)) break;
  }
  const modes = await Promise.all(dirs.map((d) => stat(d).then((s) => s.mode, () => 0o777)));
  return dirs.filter((_, i) => ((modes[i] ?? 0) & 0o001) === 0);
}

/** Why the agent binary cannot run as the sandbox's root, or undefined when it can. */
export async function agentBinaryProblem(agentPath: string): Promise<string | undefined> {
  let s;
  try {
    s = await stat(agentPath);
  } catch (err) {
    return `agent binary ${agentPath} is missing (${(err as NodeJS.ErrnoException).code ?? "error"}); build it with \`bash agent/build.sh\``;
  }
  if (!s.isFile()) return `agent binary ${agentPath} is not a regular file`;
  if ((s.mode & 0o001) === 0) return `agent binary ${agentPath} is not executable by the sandbox's root: chmod o+x it`;
  const closed = await untraversableAncestors(agentPath);
  if (closed.length) return `the sandbox's root cannot reach the agent binary: chmod o+x ${closed.join(" ")}`;
  return undefined;
}

/** The daemon's hard RLIMIT_NOFILE: runc cannot give a sandbox more. */
export async function hardNofileLimit(): Promise<number> {
  const text = await readFile("/proc/self/limits", "utf8").catch(() => "");
  const line = text.split("\n").find((l) => l.startsWith("Max open files"));
  const hard = line?.slice("Max open files".length).trim().split(/\s+/)[1];
  const n = hard === "unlimited" ? Infinity : Number(hard);
  return Number.isFinite(n) && n > 0 ? n : 1024;
}

/** Whether anything (file, directory, socket) exists at path. */
export function pathExists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}
