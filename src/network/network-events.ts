import { EventEmitter } from "node:events";
import type { DroppedPacket } from "./drop-log.ts";
import type { NetworkEvent } from "./types.ts";

/** Subscribe with `events.on("event", fn)` or iterate with `for await (const [e] of on(events, "event"))`. */
export type NetworkEvents = EventEmitter<{ event: [NetworkEvent] }>;

const dedupeWindowMs = { connection_blocked: 30_000, dns_query_denied: 5_000 } as const;
const maxRemembered = 4096;
const eventsPerSecondPerSandbox = 20;
const eventBurstPerSandbox = 100;

/**
 * Turns dropped packets and refused queries into events: one per connection attempt (a SYN the kernel
 * retransmits is the same attempt), one per name per few seconds, at most ~20/s per sandbox. Bounded memory.
 */
export class NetworkEventSink {
  readonly events: NetworkEvents = new EventEmitter();
  private readonly recent = new Map<string, number>();
  private readonly budgets = new Map<string, { tokens: number; at: number }>();

  blocked(p: DroppedPacket, now = Date.now()): void {
    const key = ["c", p.sandboxId, p.kind, p.source, p.sourcePort, p.destination, p.destinationPort, p.protocol].join("|");
    if (!this.fresh(key, now, dedupeWindowMs.connection_blocked) || !this.spend(p.sandboxId, now)) return;
    this.emit({
      type: "connection_blocked",
      sandboxId: p.sandboxId,
      destination: p.destination,
      port: p.destinationPort,
      protocol: p.protocol,
      reason: "host_not_allowed",
      target: p.kind === "spoof" ? "spoofed_source" : p.kind,
      source: p.source,
      at: new Date(now),
    });
  }

  dnsDenied(sandboxId: string, name: string, queryType: string, now = Date.now()): void {
    if (!this.fresh(["d", sandboxId, name].join("|"), now, dedupeWindowMs.dns_query_denied) || !this.spend(sandboxId, now)) return;
    this.emit({ type: "dns_query_denied", sandboxId, name, queryType, reason: "host_not_allowed", at: new Date(now) });
  }

  forget(sandboxId: string): void {
    this.budgets.delete(sandboxId);
  }

  private emit(e: NetworkEvent): void {
    // a listener that throws must not break the kernel log reader or the DNS server
    try {
      this.events.emit("event", e);
    } catch {
      // the listener's problem
    }
  }

  private fresh(key: string, now: number, windowMs: number): boolean {
    const seen = this.recent.get(key);
    if (seen !== undefined && now - seen < windowMs) return false;
    this.recent.delete(key);
    this.recent.set(key, now);
    // Map keeps insertion order: the first entries are the oldest
    while (this.recent.size > maxRemembered) this.recent.delete(this.recent.keys().next().value!);
    return true;
  }

  private spend(sandboxId: string, now: number): boolean {
    const b = this.budgets.get(sandboxId) ?? { tokens: eventBurstPerSandbox, at: now };
    b.tokens = Math.min(eventBurstPerSandbox, b.tokens + ((now - b.at) / 1000) * eventsPerSecondPerSandbox);
    b.at = now;
    this.budgets.set(sandboxId, b);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }
}
