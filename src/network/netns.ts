import { randomBytes } from "node:crypto";
import { access, mkdir, readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { runCommand } from "../host-command/index.ts";
import type { AddressPair } from "./address-pool.ts";
import { hostInterfaceName, netnsName, netnsPath, sandboxIdOfName, type NetworkNaming } from "./names.ts";

const ipTimeoutMs = 10_000;

/** Sysctls of the sandbox's netns, set before any interface exists so eth0 never gets an IPv6 address. */
const sandboxSysctls = [
  "net.ipv6.conf.all.disable_ipv6=1",
  "net.ipv6.conf.default.disable_ipv6=1",
  "net.ipv4.ip_forward=0",
  "net.ipv4.conf.all.rp_filter=1",
  "net.ipv4.conf.default.rp_filter=1",
];

/**
 * A netns `cr-<id>` holding loopback and eth0 (.2/30, default route via .1), the other veth end `cr-<id>`
 * on the host with .1/30. IPv6 is off on both ends; the host end has strict reverse-path filtering.
 * Three processes (host batch, sysctl in the netns, netns batch): each `ip` costs ~15 ms here.
 * All or nothing: on failure whatever was made is removed before the error propagates.
 */
export async function createSandboxNetns(naming: NetworkNaming, sandboxId: string, pair: AddressPair, scratchDir: string): Promise<void> {
  const ns = netnsName(naming, sandboxId);
  const hostIf = hostInterfaceName(naming, sandboxId);
  try {
    await ipBatch(scratchDir, [], [
      `netns add ${ns}`,
      // the peer is born inside the netns as eth0: it never exists on the host under a guessable name
      `link add ${hostIf} type veth peer name eth0 netns ${ns}`,
      // no IPv6 link-local on the host end, even before disable_ipv6 below
      `link set ${hostIf} addrgenmode none`,
      `addr add ${pair.hostAddress}/30 dev ${hostIf}`,
      `link set ${hostIf} up`,
    ]);
    // nothing runs in the netns yet: no packet crosses the veth before these are set
    await hostInterfaceSysctls(hostIf);
    await runCommand("ip", ["netns", "exec", ns, "sysctl", "-q", "-w", ...sandboxSysctls], { timeoutMs: ipTimeoutMs });
    await ipBatch(scratchDir, ["-n", ns], [
      `addr add ${pair.sandboxAddress}/30 dev eth0`,
      "link set lo up",
      "link set eth0 up",
      `route add default via ${pair.hostAddress} dev eth0`,
    ]);
  } catch (err) {
    await removeSandboxNetns(naming, sandboxId, scratchDir).catch(() => {});
    throw err;
  }
}

/** `ip [globalArgs] -batch <file>`: several commands, one process; stops at the first failing line. */
async function ipBatch(scratchDir: string, globalArgs: string[], lines: string[]): Promise<void> {
  await mkdir(scratchDir, { recursive: true, mode: 0o700 });
  const file = join(scratchDir, `ip-${randomBytes(6).toString("hex")}.batch`);
  await writeFile(file, lines.join("\n") + "\n", { mode: 0o600 });
  try {
    await runCommand("ip", [...globalArgs, "-batch", file], { timeoutMs: ipTimeoutMs });
  } finally {
    await rm(file, { force: true });
  }
}

/** Written directly: the host end lives in the daemon's own netns. */
async function hostInterfaceSysctls(hostIf: string): Promise<void> {
  await writeFile(`/proc/sys/net/ipv6/conf/${hostIf}/disable_ipv6`, "1");
  await writeFile(`/proc/sys/net/ipv4/conf/${hostIf}/rp_filter`, "1");
  await writeFile(`/proc/sys/net/ipv4/conf/${hostIf}/route_localnet`, "0");
  await writeFile(`/proc/sys/net/ipv4/conf/${hostIf}/accept_local`, "0");
}

/**
 * Removes the veth pair and the netns; idempotent, and safe on any partial state a killed daemon left.
 * The veth goes first and explicitly: a netns that a process still holds outlives `ip netns del`, its eth0 with it.
 */
export async function removeSandboxNetns(naming: NetworkNaming, sandboxId: string, scratchDir: string): Promise<void> {
  const hostIf = hostInterfaceName(naming, sandboxId);
  const ns = netnsName(naming, sandboxId);
  const link = `/sys/class/net/${hostIf}`;
  const path = netnsPath(naming, sandboxId);
  const [hasLink, hasNs] = await Promise.all([exists(link), exists(path)]);
  if (!hasLink && !hasNs) return;
  let failure = "";
  // -force: a failing line does not stop the next one; what is left is checked below
  await ipBatch(scratchDir, ["-force"], [...(hasLink ? [`link del ${hostIf}`] : []), ...(hasNs ? [`netns del ${ns}`] : [])]).catch((err: Error) => {
    failure = err.message;
  });
  const problems: string[] = [];
  if (await exists(link)) problems.push(`veth ${hostIf} is still there: ${failure}`);
  // a daemon killed inside `ip netns add` can leave the file without the bind mount on it
  if (await exists(path)) await rm(path, { force: true }).catch((err: Error) => problems.push(`netns ${ns}: ${failure}; rm: ${err.message}`));
  if (problems.length) throw new Error(problems.join("; "));
}

/**
 * A blackhole route for the whole pool: each sandbox's /30 is more specific, so only traffic to addresses no
 * sandbox holds hits it — it dies on the host instead of following the default route out. Idempotent.
 */
export async function ensurePoolBlackhole(pool: string): Promise<void> {
  await runCommand("ip", ["route", "replace", "blackhole", pool], { timeoutMs: ipTimeoutMs });
}

/** Sandbox ids that have a netns or a host veth end of this naming. */
export async function listSandboxNetnsIds(naming: NetworkNaming): Promise<string[]> {
  const [netns, links] = await Promise.all([readdir("/run/netns").catch(() => []), readdir("/sys/class/net").catch(() => [])]);
  const ids = new Set<string>();
  for (const name of [...netns, ...links]) {
    const id = sandboxIdOfName(naming, name);
    if (id) ids.add(id);
  }
  return [...ids].sort();
}

/** True when both the netns and the host veth end exist. */
export async function sandboxNetnsExists(naming: NetworkNaming, sandboxId: string): Promise<boolean> {
  const [ns, link] = await Promise.all([exists(netnsPath(naming, sandboxId)), exists(`/sys/class/net/${hostInterfaceName(naming, sandboxId)}`)]);
  return ns && link;
}


function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}
