import { access, readdir, rm, writeFile } from "node:fs/promises";
import { runCommand, tryCommand, describeFailure } from "../host-command/index.ts";
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
 * All or nothing: on failure whatever was made is removed before the error propagates.
 */
export async function createSandboxNetns(naming: NetworkNaming, sandboxId: string, pair: AddressPair): Promise<void> {
  const ns = netnsName(naming, sandboxId);
  const hostIf = hostInterfaceName(naming, sandboxId);
  try {
    await ip(["netns", "add", ns]);
    await runCommand("ip", ["netns", "exec", ns, "sysctl", "-q", "-w", ...sandboxSysctls], { timeoutMs: ipTimeoutMs });
    // the peer is born inside the netns as eth0: it never exists on the host under a guessable name
    await ip(["link", "add", hostIf, "type", "veth", "peer", "name", "eth0", "netns", ns]);
    await hostInterfaceSysctls(hostIf);
    await ip(["addr", "add", `${pair.hostAddress}/30`, "dev", hostIf]);
    await ip(["link", "set", hostIf, "up"]);
    await ip(["-n", ns, "addr", "add", `${pair.sandboxAddress}/30`, "dev", "eth0"]);
    await ip(["-n", ns, "link", "set", "lo", "up"]);
    await ip(["-n", ns, "link", "set", "eth0", "up"]);
    await ip(["-n", ns, "route", "add", "default", "via", pair.hostAddress, "dev", "eth0"]);
  } catch (err) {
    await removeSandboxNetns(naming, sandboxId).catch(() => {});
    throw err;
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
export async function removeSandboxNetns(naming: NetworkNaming, sandboxId: string): Promise<void> {
  const hostIf = hostInterfaceName(naming, sandboxId);
  const ns = netnsName(naming, sandboxId);
  const problems: string[] = [];
  if (await exists(`/sys/class/net/${hostIf}`)) {
    const r = await tryCommand("ip", ["link", "del", hostIf], { timeoutMs: ipTimeoutMs });
    if (r.code !== 0 && (await exists(`/sys/class/net/${hostIf}`))) problems.push(describeFailure("ip", ["link", "del", hostIf], r));
  }
  const path = netnsPath(naming, sandboxId);
  if (await exists(path)) {
    const r = await tryCommand("ip", ["netns", "del", ns], { timeoutMs: ipTimeoutMs });
    // a daemon killed inside `ip netns add` can leave the file without the bind mount on it
    if (r.code !== 0 && (await exists(path))) await rm(path, { force: true }).catch((err: Error) => problems.push(`${describeFailure("ip", ["netns", "del", ns], r)}; rm: ${err.message}`));
  }
  if (problems.length) throw new Error(problems.join("; "));
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

async function ip(args: string[]): Promise<void> {
  await runCommand("ip", args, { timeoutMs: ipTimeoutMs });
}

function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}
