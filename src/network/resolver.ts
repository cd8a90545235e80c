import { Resolver } from "node:dns/promises";
import type { HostResolver } from "./types.ts";

export interface HostResolverOptions {
  /** "ip" or "ip:port"; default: the host's /etc/resolv.conf */
  servers?: string[];
  /** per try; default 2000 */
  timeoutMs?: number;
  /** default 2 */
  tries?: number;
}

/** Resolves on the host with node:dns (c-ares), so the sandbox never talks to a real DNS server itself. */
export function hostResolver(opts: HostResolverOptions = {}): HostResolver {
  const resolver = new Resolver({ timeout: opts.timeoutMs ?? 2000, tries: opts.tries ?? 2 });
  if (opts.servers) resolver.setServers(opts.servers);
  return {
    resolve4: (name) => resolver.resolve4(name, { ttl: true }),
  };
}
