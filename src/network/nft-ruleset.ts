/**
 * Renders Cleanroom's nftables table and each sandbox's chains and sets as `nft -f` scripts. Pure: no I/O,
 * so every rule is unit-tested without root. One script = one atomic transaction.
 *
 * Packet path of a sandbox (host veth end `cr-<id>`, addresses .1 host / .2 sandbox of its /30):
 *   prerouting (raw, before conntrack)  iifname → sb-<id>-pre: IPv6 and any source but .2 dropped (anti-spoof)
 *   input (to the host)                 iifname → sb-<id>-in: only .1:gateway (tcp) and .1:53 (udp+tcp); else logged + rejected
 *   forward (leaving the host)          iifname → sb-<id>-fwd: never-reachable ranges skip the stage chain; the stage
 *                                       chain accepts new tcp connections to `ip . port` of the active allow set
 *                                       (or anything under allow-all) and marks them; the rest is logged + rejected
 *   forward (coming back)               oifname "cr-*": established/related accepted, anything new toward a sandbox dropped
 *   postrouting (nat)                   from the pool, leaving on a non-sandbox interface: masquerade
 * The stage chain stamps accepted connections with a ct mark unique to (sandbox, stage activation) and lets
 * established packets through only with that mark: switching stage cuts connections the old stage allowed.
 */
import { alwaysBlockedCidrs } from "./ipv4.ts";
import { allowSetName, dispatchMaps, dropLogPrefix, sandboxChainName, type DropKind, type NetworkNaming } from "./names.ts";

/** The high bit says "a Cleanroom sandbox accepted this connection" (the forward guard lets only those through). */
export const cleanroomMarkBit = 0x80000000;
/** Dropped packets are logged at most this often per sandbox chain; the rest are dropped silently. */
export const dropLogRate = "10/second burst 20 packets";
/** Elements per allow set: DNS answers and IP literals of one stage. */
export const allowSetSize = 16384;

export interface TableConfig extends NetworkNaming {
  /** the sandbox pool, e.g. "10.213.0.0/16" */
  pool: string;
  /** extra never-reachable CIDRs */
  blockedCidrs: readonly string[];
  /** the daemon switched IPv4 forwarding on: drop forwarded traffic that no sandbox rule accepted */
  forwardGuard: boolean;
}

export interface SandboxRuleInput {
  sandboxId: string;
  hostInterface: string;
  hostAddress: string;
  sandboxAddress: string;
  gatewayPort: number;
  dnsPort: number;
  /** every stage that gets an allow set */
  stages: readonly string[];
}

export interface StageRuleInput {
  sandboxId: string;
  /** the stage whose set admits new connections; null = none (only allowAll or nothing) */
  activeStage: string | null;
  allowAll: boolean;
  /** ct mark of this activation; must carry cleanroomMarkBit */
  mark: number;
}

export interface SetElement {
  stage: string;
  address: string;
  port: number;
  /** undefined: never expires (IP literals from policy) */
  timeoutS?: number;
}

/** What of a sandbox exists in the table, as listed by nft; removal deletes exactly that. */
export interface SandboxNftObjects {
  chains: string[];
  sets: string[];
  /** base dispatch maps holding an element for the sandbox's interface */
  dispatch: string[];
}

/**
 * The table and its base chains. Safe to apply on every daemon start: `add` of an existing table, set or
 * chain is a no-op, and the base chains are flushed and refilled in the same transaction, so sandbox chains,
 * sets and dispatch elements survive untouched.
 */
export function renderTableSetup(cfg: TableConfig): string {
  const t = `inet ${cfg.table}`;
  const own = `"${cfg.interfacePrefix}*"`;
  const blocked = [...alwaysBlockedCidrs, cfg.pool, ...cfg.blockedCidrs];
  const lines = [
    `add table ${t}`,
    ...Object.values(dispatchMaps).map((m) => `add map ${t} ${m} { type ifname : verdict ; }`),
    `add set ${t} never_forward { type ipv4_addr ; flags interval ; auto-merge ; }`,
    `flush set ${t} never_forward`,
    `add element ${t} never_forward { ${blocked.join(", ")} }`,
    // raw priority: spoofed packets are dropped before conntrack ever sees them
    `add chain ${t} prerouting { type filter hook prerouting priority raw ; policy accept ; }`,
    `add chain ${t} input { type filter hook input priority filter ; policy accept ; }`,
    `add chain ${t} forward { type filter hook forward priority filter ; policy accept ; }`,
    // after every filter chain at priority 0, so another manager's sandbox rules have marked what they accepted
    `add chain ${t} forward_guard { type filter hook forward priority 10 ; policy accept ; }`,
    `add chain ${t} postrouting { type nat hook postrouting priority srcnat ; policy accept ; }`,
    ...["prerouting", "input", "forward", "forward_guard", "postrouting"].map((c) => `flush chain ${t} ${c}`),
    `add rule ${t} prerouting iifname vmap @${dispatchMaps.pre}`,
    `add rule ${t} input iifname vmap @${dispatchMaps.in}`,
    // a sandbox's host address answers only on its own veth (and to the host itself), never to the LAN
    `add rule ${t} input ip daddr ${cfg.pool} iif != "lo" iifname != ${own} drop`,
    `add rule ${t} forward iifname vmap @${dispatchMaps.fwd}`,
    `add rule ${t} forward oifname ${own} ct state established,related accept`,
    `add rule ${t} forward oifname ${own} drop`,
    ...(cfg.forwardGuard ? [`add rule ${t} forward_guard ct mark and ${hex(cleanroomMarkBit)} != ${hex(cleanroomMarkBit)} drop`] : []),
    `add rule ${t} postrouting ip saddr ${cfg.pool} oifname != ${own} masquerade`,
  ];
  return lines.join("\n") + "\n";
}

/**
 * A sandbox's chains, sets and dispatch elements, created in one transaction. Dispatch keys on the interface
 * name, which need not exist yet: the rules are in place before the veth is, so there is no unguarded moment.
 */
export function renderSandboxSetup(cfg: NetworkNaming, sb: SandboxRuleInput, stage: StageRuleInput, literals: readonly SetElement[] = []): string {
  const t = `inet ${cfg.table}`;
  const id = sb.sandboxId;
  const chain = (role: "pre" | "in" | "fwd" | "stage") => sandboxChainName(id, role);
  const lines = [
    ...(["pre", "in", "fwd", "stage"] as const).map((r) => `add chain ${t} ${chain(r)}`),
    ...(["pre", "in", "fwd", "stage"] as const).map((r) => `flush chain ${t} ${chain(r)}`),
    ...sb.stages.map((s) => `add set ${t} ${allowSetName(id, s)} { type ipv4_addr . inet_service ; flags timeout ; size ${allowSetSize} ; }`),
    // anti-spoof: nothing but IPv4 from the sandbox's own address leaves its veth
    `add rule ${t} ${chain("pre")} meta nfproto != ipv4 drop`,
    `add rule ${t} ${chain("pre")} ip saddr != ${sb.sandboxAddress} ${logStatement("spoof", id)}`,
    `add rule ${t} ${chain("pre")} ip saddr != ${sb.sandboxAddress} drop`,
    // the host: gateway and DNS on the sandbox's own host address, nothing else
    `add rule ${t} ${chain("in")} ip daddr ${sb.hostAddress} tcp dport ${sb.gatewayPort} accept`,
    `add rule ${t} ${chain("in")} ip daddr ${sb.hostAddress} meta l4proto { tcp, udp } th dport ${sb.dnsPort} accept`,
    ...rejectAndLog(t, chain("in"), "host", id),
    // other hosts: never-reachable ranges skip the stage chain and fall through to reject
    `add rule ${t} ${chain("fwd")} ip daddr != @never_forward jump ${chain("stage")}`,
    ...rejectAndLog(t, chain("fwd"), "egress", id),
    ...stageRules(cfg, stage),
    ...literals.map((e) => `add element ${t} ${allowSetName(id, e.stage)} { ${elementText(e)} }`),
    ...(["pre", "in", "fwd"] as const).map((r) => `add element ${t} ${dispatchMaps[r]} { "${sb.hostInterface}" : jump ${chain(r)} }`),
  ];
  return lines.join("\n") + "\n";
}

/** Replaces the stage chain's rules: one transaction, so a switch never passes through "nothing" or "both". */
export function renderStageSwitch(cfg: NetworkNaming, stage: StageRuleInput): string {
  return [`flush chain inet ${cfg.table} ${sandboxChainName(stage.sandboxId, "stage")}`, ...stageRules(cfg, stage)].join("\n") + "\n";
}

function stageRules(cfg: NetworkNaming, s: StageRuleInput): string[] {
  if ((s.mark & cleanroomMarkBit) === 0 || s.mark > 0xffffffff || !Number.isInteger(s.mark)) throw new Error(`ct mark ${s.mark} lacks the Cleanroom bit`);
  const at = `add rule inet ${cfg.table} ${sandboxChainName(s.sandboxId, "stage")}`;
  const mark = hex(s.mark);
  const rules = [`${at} ct state established,related ct mark ${mark} accept`];
  if (s.allowAll) rules.push(`${at} ct state new ct mark set ${mark} accept`);
  else if (s.activeStage !== null) {
    rules.push(`${at} ct state new meta l4proto tcp ip daddr . tcp dport @${allowSetName(s.sandboxId, s.activeStage)} ct mark set ${mark} accept`);
  }
  return rules;
}

function rejectAndLog(t: string, chain: string, kind: DropKind, id: string): string[] {
  return [
    `add rule ${t} ${chain} ${logStatement(kind, id)}`,
    // a reset/ICMP error instead of silence: blocked tools fail fast ("connection refused") instead of hanging
    `add rule ${t} ${chain} meta l4proto tcp reject with tcp reset`,
    `add rule ${t} ${chain} reject with icmpx admin-prohibited`,
  ];
}

function logStatement(kind: DropKind, id: string): string {
  return `limit rate ${dropLogRate} log prefix "${dropLogPrefix(kind, id)}" level info`;
}

/**
 * Adds elements or renews their timeout. nft cannot change the timeout of an existing element, so each one is
 * added (a no-op if present), deleted and added again with the new timeout; in one transaction no packet sees the gap.
 */
export function renderElementRefresh(cfg: NetworkNaming, sandboxId: string, elements: readonly SetElement[]): string {
  const t = `inet ${cfg.table}`;
  const lines: string[] = [];
  for (const e of elements) {
    const set = allowSetName(sandboxId, e.stage);
    const key = `${e.address} . ${e.port}`;
    lines.push(`add element ${t} ${set} { ${key} }`, `delete element ${t} ${set} { ${key} }`, `add element ${t} ${set} { ${elementText(e)} }`);
  }
  return lines.join("\n") + "\n";
}

function elementText(e: SetElement): string {
  return e.timeoutS === undefined ? `${e.address} . ${e.port}` : `${e.address} . ${e.port} timeout ${Math.max(1, Math.round(e.timeoutS))}s`;
}

/**
 * Deletes what exists of a sandbox: dispatch elements first (they reference the chains), then every chain is
 * flushed (rules reference other chains and sets) and deleted, then the sets. Only the sandbox's own objects.
 */
export function renderSandboxRemoval(cfg: NetworkNaming, hostInterface: string, present: SandboxNftObjects): string {
  const t = `inet ${cfg.table}`;
  const lines = [
    ...present.dispatch.map((m) => `delete element ${t} ${m} { "${hostInterface}" }`),
    ...present.chains.map((c) => `flush chain ${t} ${c}`),
    ...present.chains.map((c) => `delete chain ${t} ${c}`),
    ...present.sets.map((s) => `delete set ${t} ${s}`),
  ];
  return lines.length ? lines.join("\n") + "\n" : "";
}

function hex(n: number): string {
  return "0x" + n.toString(16).padStart(8, "0");
}
