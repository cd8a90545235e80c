import type { Logger } from "../observability/index.ts";

/** The gateway's routes, as audit events name them. */
export type GatewayService = "git" | "registry" | "dockerhub" | "goproxy" | "sumdb" | "rubygems" | "fetch" | "npm";

/** Why the gateway answered a request the way it did (Cleanroom's gateway reason codes). */
export type GatewayReasonCode =
  | "proxied"
  | "mirrored"
  | "cached"
  | "fallback"
  | "host_not_allowed"
  | "method_not_allowed"
  | "invalid_request"
  | "upstream_error";

/** One request a sandbox made to the gateway, as the sandbox's event stream and the daemon log record it. */
export interface GatewayAuditEvent {
  sandboxId: string;
  service: GatewayService | "unknown";
  /** the upstream host (and port when not 443) the request was for; "" when the request named none */
  destinationHost: string;
  action: "allow" | "deny";
  reasonCode: GatewayReasonCode;
  method: string;
  /** the request path, truncated; never a query string (it may carry tokens a guest tool put there) */
  path: string;
  status: number;
  /** body bytes sent to the sandbox */
  bytes: number;
  durationMs: number;
  at: Date;
}

/** The sandbox behind a connection, with what its active stage may reach. Found by source address only. */
export interface GatewayCaller {
  sandboxId: string;
  /** the stage whose allow list is in force; null = none (everything upstream is refused unless allowAll) */
  stage: string | null;
  /** upstream `host:port` pairs of the active stage (hosts lowercased) */
  rules: readonly { host: string; ports: readonly number[] }[];
  /** `--dangerously-allow-all` */
  allowAll: boolean;
}

/**
 * Who is calling: `remoteAddress` is the connection's source (anti-spoofed by network/'s rules), `localAddress`
 * the address it reached. Undefined = not a sandbox, or a sandbox reaching another sandbox's host address.
 */
export type CallerLookup = (remoteAddress: string, localAddress: string) => GatewayCaller | undefined;

/** Resolves upstream names on the host (network/'s HostResolver has this shape). */
export interface UpstreamResolver {
  resolve4(name: string): Promise<{ address: string; ttl: number }[]>;
}

/** Runtime config `gateway:` as the gateway uses it (validated by config/). */
export interface GatewaySettings {
  /** `gateway.oci.registries`: registry name the guest uses → upstream base URL (operator-trusted, may be private) */
  ociRegistries?: Record<string, string>;
  /** `gateway.git.cache_hosts`: when set, only these hosts get a mirror; others are proxied straight through */
  gitCacheHosts?: string[];
  /** `gateway.npm.registry`: the npm registry host guests are pointed at (default registry.npmjs.org) */
  npmRegistry?: string;
  /** `gateway.upstream.allow_private_cidrs`: upstream addresses in these IPv4 blocks are allowed (tests, LAN mirrors) */
  allowPrivateCidrs?: string[];
  /** `gateway.upstream.ca_file`: PEM bundle trusted for upstream TLS in addition to the system roots */
  upstreamCaFile?: string;
  /** `gateway.credentials.env`: upstream host → name of the daemon env var holding its token */
  credentialEnv?: Record<string, string>;
  /** `gateway.credentials.github_app` */
  githubApp?: GithubAppSettings;
  /** largest object the gateway fetches or caches; default 8 GiB */
  maxObjectBytes?: number;
  /** the Go module proxy `/goproxy/` serves from, `host[:port]` (default proxy.golang.org) */
  goProxy?: string;
  /** the RubyGems host `/rubygems/` serves from, `host[:port]` (default rubygems.org) */
  rubygemsHost?: string;
}

export interface GithubAppSettings {
  appId: string;
  installationId: string;
  privateKeyFile: string;
  /** `owner/` or `owner/repo` prefixes whose github.com Git traffic uses the app's installation token */
  repoPrefixes: string[];
  /** default https://api.github.com (tests point it at their own server) */
  apiBaseUrl?: string;
}

export interface GatewayOptions {
  /** `--gateway-listen`: ":8170" (all addresses), "host:port", ":0" for an ephemeral port */
  listen: string;
  /** where mirrors and the content store live: `<stateDir>/gateway` */
  stateDir: string;
  callers: CallerLookup;
  resolver: UpstreamResolver;
  settings?: GatewaySettings;
  onAudit?: (event: GatewayAuditEvent) => void;
  logger: Logger;
  /** environment credentials are read from (default process.env) */
  env?: NodeJS.ProcessEnv;
  /**
   * The host in the gateway URL handed to guests (guest env, rewritten npm tarball URLs); default
   * gateway.cleanroom.internal. Loopback tests use "127.0.0.1", which their host tools resolve and the Host
   * check accepts as the address reached.
   */
  publicHost?: string;
}
