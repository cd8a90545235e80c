/** Every host-visible name of a sandbox's network, derived from its id alone so a restarted daemon finds them. Pure. */

export const sandboxIdPattern = /^[a-z0-9]{12}$/;
/** stage names are nft set-name fragments: keep them short and plain */
export const stageNamePattern = /^[a-z][a-z0-9_]{0,31}$/;
/** 3 characters + a 12-character id = 15, the kernel's limit for interface names */
export const interfacePrefixPattern = /^[a-z][a-z0-9]-$/;
export const tableNamePattern = /^[a-z][a-z0-9_]{0,31}$/;

export interface NetworkNaming {
  /** nft table (family inet) owned by this manager */
  table: string;
  /** prefix of host veth ends and netns names, e.g. "cr-" */
  interfacePrefix: string;
}

export function hostInterfaceName(n: NetworkNaming, sandboxId: string): string {
  return n.interfacePrefix + sandboxId;
}

export function netnsName(n: NetworkNaming, sandboxId: string): string {
  return n.interfacePrefix + sandboxId;
}

export function netnsPath(n: NetworkNaming, sandboxId: string): string {
  return `/run/netns/${netnsName(n, sandboxId)}`;
}

/** The sandbox id in a host interface or netns name of this manager, or undefined. */
export function sandboxIdOfName(n: NetworkNaming, name: string): string | undefined {
  if (!name.startsWith(n.interfacePrefix)) return undefined;
  const id = name.slice(n.interfacePrefix.length);
  return sandboxIdPattern.test(id) ? id : undefined;
}

export type SandboxChainRole = "pre" | "in" | "fwd" | "stage";
export const sandboxChainRoles: readonly SandboxChainRole[] = ["pre", "in", "fwd", "stage"];

export function sandboxChainName(sandboxId: string, role: SandboxChainRole): string {
  return `sb-${sandboxId}-${role}`;
}

export function allowSetName(sandboxId: string, stage: string): string {
  return `allow-${sandboxId}-${stage}`;
}

/** The sandbox id of one of our per-sandbox chains or sets, or undefined for base objects. */
export function sandboxIdOfNftObject(name: string): string | undefined {
  const m = /^(?:sb|allow)-([a-z0-9]{12})-[a-z0-9_]+$/.exec(name);
  return m?.[1];
}

/** Base dispatch maps: interface name → jump into the sandbox's chain. */
export const dispatchMaps = { pre: "from_sandbox_pre", in: "from_sandbox_in", fwd: "from_sandbox_fwd" } as const;

/** Kernel log prefix of dropped packets; `kind` is what the packet tried: another host, a host port, a spoofed source. */
export function dropLogPrefix(kind: DropKind, sandboxId: string): string {
  return `cleanroom ${kind} ${sandboxId}: `;
}

export type DropKind = "egress" | "host" | "spoof";
