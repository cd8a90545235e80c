/**
 * What the DNS policy server answers, and which `ip . port` elements an answer opens. No sockets: the
 * resolver and the nft update are injected, so this is tested without root.
 */
import { cidrContains, parseIpv4, type Cidr, isIpv4 } from "./ipv4.ts";
import { encodeAnswer, encodeEmpty, parseQuery, qtypeName, qtypes, rcodes, type DnsQuery, type Rcode } from "./dns-message.ts";
import type { SetElement } from "./nft-ruleset.ts";
import type { HostResolver } from "./types.ts";

/** name → stage → TCP ports: the DNS view of a sandbox's allowlists (IP literals excluded). */
export type NamePolicy = ReadonlyMap<string, ReadonlyMap<string, readonly number[]>>;

/** Addresses per answer at most: each becomes (ports × stages) set elements. */
export const maxAnswerAddresses = 16;
/** The answer's TTL stays this far below the element timeout, so a client's cached answer never outlives its element. */
export const answerTtlMarginS = 10;
const resolveTimeoutMs = 5_000;

export interface ResponderContext {
  sandboxId: string;
  /** the sandbox's host-side address: what `gatewayName` resolves to */
  hostAddress: string;
  gatewayName: string;
  names: NamePolicy;
  activeStage(): string | null;
  allowAll(): boolean;
  resolver: HostResolver;
  /** never answered: these are never reachable, so an answer would only mislead */
  blocked: readonly Cidr[];
  ttlFloorS: number;
  ttlCapS: number;
  /** adds or renews elements of the sandbox's allow sets; resolves once the kernel has them */
  addElements(elements: SetElement[]): Promise<void>;
  onDenied(name: string, queryType: string): void;
  onProblem?(message: string, detail: Record<string, unknown>): void;
}

export interface TtlPlan {
  /** the TTL written into the answer */
  answerTtlS: number;
  /** the set element's timeout */
  elementTimeoutS: number;
}

/**
 * Element timeout = the record's TTL, floored (a TTL of 0 or 5 s must not expire the element between the
 * answer and the connect) and capped (an address stays allowed at most this long without a fresh lookup).
 */
export function ttlPlan(ttl: number, floorS: number, capS: number): TtlPlan {
  const t = Number.isFinite(ttl) && ttl > 0 ? Math.floor(ttl) : 0;
  const elementTimeoutS = Math.max(floorS, Math.min(t, capS));
  return { elementTimeoutS, answerTtlS: Math.max(0, Math.min(t, elementTimeoutS - answerTtlMarginS)) };
}

/** The reply to one message from the sandbox, or null to stay silent. Never throws. */
export async function respond(ctx: ResponderContext, message: Uint8Array, maxAnswerBytes: number): Promise<Buffer | null> {
  const parsed = parseQuery(message);
  if (parsed.kind === "drop") return null;
  if (parsed.kind === "error") return encodeEmpty(parsed.id, parsed.recursionDesired, parsed.rcode, parsed.question);
  const q = parsed.query;
  const empty = (rcode: Rcode) => encodeEmpty(q.id, q.recursionDesired, rcode, q.question);
  if (q.qclass !== 1) return empty(rcodes.REFUSED);
  if (q.name === ctx.gatewayName) {
    return q.qtype === qtypes.A ? encodeAnswer(q, rcodes.NOERROR, [{ address: ctx.hostAddress, ttl: 300 }], maxAnswerBytes) : empty(rcodes.NOERROR);
  }
  const allowAll = ctx.allowAll();
  const stage = ctx.activeStage();
  const stages = q.isHostname ? ctx.names.get(q.name) : undefined;
  if (!allowAll && (stage === null || !stages?.has(stage))) {
    ctx.onDenied(q.name, qtypeName(q.qtype));
    return empty(rcodes.REFUSED);
  }
  // IPv6 is off in every sandbox: AAAA (and any other type) of an allowed name is an empty answer
  if (q.qtype !== qtypes.A || !q.isHostname) return empty(rcodes.NOERROR);
  try {
    return await resolveAndOpen(ctx, q, allowAll ? undefined : stages, maxAnswerBytes);
  } catch (err) {
    ctx.onProblem?.("DNS answer failed", { sandbox_id: ctx.sandboxId, name: q.name, err: (err as Error).message });
    return empty(rcodes.SERVFAIL);
  }
}

async function resolveAndOpen(ctx: ResponderContext, q: DnsQuery, stages: ReadonlyMap<string, readonly number[]> | undefined, maxAnswerBytes: number): Promise<Buffer> {
  let records: { address: string; ttl: number }[];
  try {
    records = await withTimeout(ctx.resolver.resolve4(q.name), resolveTimeoutMs);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOTFOUND") return encodeEmpty(q.id, q.recursionDesired, rcodes.NXDOMAIN, q.question);
    if (code === "ENODATA") return encodeEmpty(q.id, q.recursionDesired, rcodes.NOERROR, q.question);
    throw err;
  }
  const seen = new Set<string>();
  const usable: { address: string; ttl: number }[] = [];
  for (const r of records) {
    if (typeof r?.address !== "string" || !isIpv4(r.address) || seen.has(r.address)) continue;
    seen.add(r.address);
    const n = parseIpv4(r.address);
    if (ctx.blocked.some((c) => cidrContains(c, n))) continue;
    usable.push(r);
    if (usable.length === maxAnswerAddresses) break;
  }
  const answers = usable.map((r) => {
    const plan = ttlPlan(r.ttl, ctx.ttlFloorS, ctx.ttlCapS);
    return { address: r.address, ttl: plan.answerTtlS, elementTimeoutS: plan.elementTimeoutS };
  });
  if (stages && answers.length) {
    // every stage that lists the name gets the addresses, so a later switch finds them already there
    const elements: SetElement[] = [];
    for (const [stage, ports] of stages) {
      for (const a of answers) for (const port of ports) elements.push({ stage, address: a.address, port, timeoutS: a.elementTimeoutS });
    }
    await ctx.addElements(elements);
  }
  return encodeAnswer(q, rcodes.NOERROR, answers, maxAnswerBytes);
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error(`resolver gave no answer within ${ms} ms`), { code: "ETIMEOUT" })), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
