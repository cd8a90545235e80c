import type { Logger } from "../observability/index.ts";

/** One allowlist entry, already validated and lowercased by policy/: a DNS name or an IPv4 literal, and its TCP ports. */
export interface AllowRule {
  host: string;
  ports: number[];
}

/** What a sandbox may reach. Stage names follow policy (repository, dependencies, services, execution). */
export interface SandboxNetworkSpec {
  /** /^[a-z0-9]{12}$/ */
  sandboxId: string;
  /** a policy without stage blocks: shorthand for `stages: { default: allow }, initialStage: "default"` */
  allow?: AllowRule[];
  /** stage-scoped allowlists; no inheritance between stages, and a stage missing here gets no egress */
  stages?: Record<string, AllowRule[]>;
  /** the stage active once setUp returns; null = no egress until activateStage. Default: "default" when `allow` is given, else null */
  initialStage?: string | null;
  /** `--dangerously-allow-all`: any destination except the host, other sandboxes, loopback, link-local/metadata, multicast */
  allowAll?: boolean;
}

/** A sandbox's network as the supervisor needs it: where the backend joins, what to write into the sandbox. */
export interface SandboxNetwork {
  sandboxId: string;
  /** bind-mounted netns file: pass as LaunchSpec.networkNamespacePath */
  netnsPath: string;
  /** host side of the /30: DNS and the gateway listen here; the sandbox's default route */
  hostAddress: string;
  /** the sandbox's eth0 address: the source address that identifies it (anti-spoofed) */
  sandboxAddress: string;
  /** host end of the veth pair */
  hostInterface: string;
  /** contents for the sandbox's /etc/resolv.conf */
  resolvConf: string;
  /** the stage whose allow set is active, null = none */
  activeStage: string | null;
  allowAll: boolean;
}

/** A resolver on the host side; the default uses node:dns with the host's configuration. */
export interface HostResolver {
  /**
   * IPv4 addresses of `name` with their TTLs (seconds). Rejects with an Error whose `code` is "ENOTFOUND"
   * (NXDOMAIN), "ENODATA" (no A records) or anything else (answered as SERVFAIL).
   */
  resolve4(name: string): Promise<{ address: string; ttl: number }[]>;
}

/** A packet from a sandbox that the rules dropped, from the kernel log. */
export interface ConnectionBlockedEvent {
  type: "connection_blocked";
  sandboxId: string;
  destination: string;
  /** destination port; null for protocols without one (ICMP) */
  port: number | null;
  protocol: string;
  reason: "host_not_allowed";
  /** egress: another host; host: a host address/port other than gateway and DNS; spoofed_source: a source address not the sandbox's */
  target: "egress" | "host" | "spoofed_source";
  source: string;
  at: Date;
}

/** A DNS query for a name the sandbox's active stage does not allow; it was answered REFUSED. */
export interface DnsQueryDeniedEvent {
  type: "dns_query_denied";
  sandboxId: string;
  /** the name asked, lowercased; bytes outside printable ASCII escaped as \DDD */
  name: string;
  queryType: string;
  reason: "host_not_allowed";
  at: Date;
}

export type NetworkEvent = ConnectionBlockedEvent | DnsQueryDeniedEvent;

export interface NetworkManagerOptions {
  /** durable state: `<stateDir>/leases.json` (address pool) and `<stateDir>/host.json` */
  stateDir: string;
  /** pool of /30s; default 10.213.0.0/16 */
  pool?: string;
  /** TCP port of the gateway on each sandbox's host address; default 8170 */
  gatewayPort?: number;
  /** port of the DNS policy server; default 53 (resolv.conf cannot name another; tests may) */
  dnsPort?: number;
  /** resolves allowed names on the host; default: node:dns with the host's resolv.conf */
  resolver?: HostResolver;
  logger?: Logger;
  /** nft table (family inet); default "cleanroom". Two managers on one host need distinct tables, prefixes and pools */
  tableName?: string;
  /** 3 characters ending in "-", prefix of veth and netns names; default "cr-" */
  interfacePrefix?: string;
  /** more destinations that are never reachable, e.g. the host's LAN */
  blockedCidrs?: string[];
  /** DNS answers become set elements for max(ttl, floor) seconds, at most cap; defaults 30 and 3600 */
  dnsTtlFloorS?: number;
  dnsTtlCapS?: number;
  /** a name the DNS server answers with the sandbox's host address; default "gateway.cleanroom.internal" */
  gatewayName?: string;
  /** skip reading /dev/kmsg (no blocked-connection events); default false */
  disableDropLog?: boolean;
}
