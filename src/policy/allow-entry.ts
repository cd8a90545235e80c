// Cleanroom's allowlist grammar: exact `host:port` pairs, nothing that could widen by accident.

export interface AllowRule {
  /** lowercased, exact */
  host: string;
  /** sorted, unique, 1..65535 */
  ports: number[];
}

const HOSTNAME = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?))*$/;
const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** Why `host` is not an acceptable allowlist host, or undefined when it is (expects it lowercased). */
export function hostProblem(host: string): string | undefined {
  if (host === "") return "the host is empty";
  if (host.includes("://")) return "URLs are not supported; write host:port";
  if (host.includes("*")) return "wildcards are not supported; list each host";
  if (host.includes("@")) return "authority-shaped hosts (user@host) are not supported; write the bare host";
  if (host.includes("/")) return host.match(/^[\d.]+\/\d+$/) ? "CIDR ranges are not supported; list each host" : "paths are not supported; write host:port";
  if (host.startsWith("[") || host.split(":").length > 2) return "IPv6 literals are not supported";
  if (host.includes(":")) return "the host must not carry a port of its own; put ports in `ports`";
  if (host === "deny" || host === "allow") return `"${host}" is not a host; the network default is set with sandbox.network.default`;
  if (IPV4.test(host)) return undefined;
  if (/^[\d.]+$/.test(host)) return "not a valid IPv4 address";
  if (!HOSTNAME.test(host)) return "not a valid host name";
  return undefined;
}

/** Why `port` is not an acceptable port, or undefined. */
export function portProblem(port: unknown): string | undefined {
  if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535) return "ports are whole numbers from 1 to 65535";
  return undefined;
}

/**
 * Parses the `host:port` shorthand. Returns the rule, or a message saying which rule the text breaks.
 * The host is lowercased; the port is required and single.
 */
export function parseShorthand(text: string): AllowRule | string {
  const lowered = text.trim().toLowerCase();
  if (lowered.includes("://")) return "URLs are not supported; write host:port";
  if (lowered.includes("*")) return "wildcards are not supported; list each host";
  if (lowered.startsWith("[") || lowered.split(":").length > 2) return "IPv6 literals are not supported in host:port shorthand";
  const colon = lowered.lastIndexOf(":");
  if (colon < 0) {
    if (lowered.includes("/")) return hostProblem(lowered)!;
    return "a bare host is not enough; add the port (host:port)";
  }
  const host = lowered.slice(0, colon);
  const portText = lowered.slice(colon + 1);
  const problem = hostProblem(host);
  if (problem) return problem;
  if (/^\d+-\d+$/.test(portText)) return "port ranges are not supported; list each port";
  if (portText.includes("/")) return "paths are not supported; write host:port";
  if (!/^\d{1,5}$/.test(portText)) return `"${portText}" is not a port number`;
  const port = Number(portText);
  const bad = portProblem(port);
  return bad ?? { host, ports: [port] };
}

/** Merges rules for the same host and sorts everything, so equal policies compile to equal bytes. */
export function normalizeRules(rules: readonly AllowRule[]): AllowRule[] {
  const byHost = new Map<string, Set<number>>();
  for (const rule of rules) {
    const ports = byHost.get(rule.host) ?? new Set<number>();
    for (const port of rule.ports) ports.add(port);
    byHost.set(rule.host, ports);
  }
  return [...byHost.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([host, ports]) => ({ host, ports: [...ports].sort((a, b) => a - b) }));
}
