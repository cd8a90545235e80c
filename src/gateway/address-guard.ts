import { BlockList, isIPv4 } from "node:net";

/**
 * Upstream addresses the gateway never connects to unless the operator lists them: a sandbox that may reach
 * `evil.example:443` must not turn the gateway into a path to the host's LAN, loopback or cloud metadata
 * service by pointing that name's DNS at them. Checked on the address actually dialled, so rebinding is moot.
 */
const NEVER_UPSTREAM = [
  ["0.0.0.0", 8], ["10.0.0.0", 8], ["100.64.0.0", 10], ["127.0.0.0", 8], ["169.254.0.0", 16], ["172.16.0.0", 12],
  ["192.0.0.0", 24], ["192.0.2.0", 24], ["192.168.0.0", 16], ["198.18.0.0", 15], ["198.51.100.0", 24],
  ["203.0.113.0", 24], ["224.0.0.0", 4], ["240.0.0.0", 4],
] as const;

export interface AddressGuard {
  /** true when the gateway may dial `address` (IPv4 only: the gateway resolves A records only) */
  permits(address: string): boolean;
}

/** `allowPrivateCidrs` ("10.250.0.0/16") re-open parts of the private ranges, for LAN mirrors and tests. */
export function addressGuard(allowPrivateCidrs: readonly string[] = []): AddressGuard {
  const blocked = new BlockList();
  for (const [net, prefix] of NEVER_UPSTREAM) blocked.addSubnet(net, prefix, "ipv4");
  const reopened = new BlockList();
  for (const cidr of allowPrivateCidrs) {
    const [net, prefix] = cidr.split("/");
    if (!net || !isIPv4(net) || !/^\d{1,2}$/.test(prefix ?? "") || Number(prefix) > 32) throw new Error(`"${cidr}" is not an IPv4 CIDR block`);
    reopened.addSubnet(net, Number(prefix), "ipv4");
  }
  return {
    permits(address) {
      if (!isIPv4(address)) return false;
      return !blocked.check(address, "ipv4") || reopened.check(address, "ipv4");
    },
  };
}
