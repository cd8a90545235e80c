import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname } from "node:path";

const forwardingSysctl = "/proc/sys/net/ipv4/ip_forward";

/**
 * Turns IPv4 forwarding on (sandbox egress is routed through the host). When the host did not forward
 * before, the daemon owns that change and answers `guard: true`: the table then drops forwarded traffic no
 * sandbox rule accepted, so the host does not become a router for anything else. The decision is kept in
 * `stateFile`, because after a restart forwarding is on either way.
 */
export async function enableIpv4Forwarding(stateFile: string): Promise<{ guard: boolean }> {
  const recorded = await readRecorded(stateFile);
  const current = (await readFile(forwardingSysctl, "utf8")).trim();
  if (current !== "1") await writeFile(forwardingSysctl, "1");
  const guard = recorded ?? current !== "1";
  if (recorded === undefined) {
    await mkdir(dirname(stateFile), { recursive: true, mode: 0o700 });
    await writeFile(stateFile, JSON.stringify({ version: 1, forwardGuard: guard }) + "\n", { mode: 0o600 });
  }
  return { guard };
}

/** Forwarding may have been switched off behind the daemon's back (admin, another tool): switch it on again. */
export async function ensureIpv4Forwarding(): Promise<void> {
  if ((await readFile(forwardingSysctl, "utf8")).trim() !== "1") await writeFile(forwardingSysctl, "1");
}

async function readRecorded(stateFile: string): Promise<boolean | undefined> {
  const text = await readFile(stateFile, "utf8").catch(() => undefined);
  if (text === undefined) return undefined;
  try {
    const parsed = JSON.parse(text) as { forwardGuard?: unknown };
    return typeof parsed.forwardGuard === "boolean" ? parsed.forwardGuard : undefined;
  } catch {
    return undefined;
  }
}
