import { EventEmitter, on } from "node:events";
import type { StateStore } from "./store.ts";
import type { SandboxEventRecord } from "./records.ts";

/** Sandbox events: stored durably, and pushed to whoever follows them. */
export class SandboxEventLog {
  readonly #store: StateStore;
  readonly #emitter = new EventEmitter();

  constructor(store: StateStore) {
    this.#store = store;
    this.#emitter.setMaxListeners(0);
  }

  record(sandboxId: string, type: string, message: string, extra: { reasonCode?: string; attributes?: Record<string, string> } = {}): SandboxEventRecord {
    const event = this.#store.addEvent({
      sandboxId,
      time: new Date().toISOString(),
      type,
      message,
      reasonCode: extra.reasonCode ?? "",
      attributes: extra.attributes ?? {},
    });
    this.#emitter.emit(sandboxId, event);
    return event;
  }

  /** Events of `types` recorded at or after `sinceIso` (newest 200 looked at). */
  since(sandboxId: string, sinceIso: string, types: readonly string[]): SandboxEventRecord[] {
    return this.#store.recentEvents(sandboxId, 200).filter((event) => event.time >= sinceIso && types.includes(event.type));
  }

  recent(sandboxId: string, limit = 50): SandboxEventRecord[] {
    return this.#store.recentEvents(sandboxId, limit);
  }

  /** Stored events after `afterSequence`, then (with follow) new ones until `signal` aborts or `until` resolves. */
  async *stream(sandboxId: string, afterSequence: number, follow: boolean, signal: AbortSignal): AsyncGenerator<SandboxEventRecord> {
    // subscribe before reading the backlog so nothing falls between the two
    const live = follow ? on(this.#emitter, sandboxId, { signal }) : undefined;
    let last = afterSequence;
    for (;;) {
      const page = this.#store.listEvents(sandboxId, last, 500);
      for (const event of page) {
        last = event.sequence;
        yield event;
      }
      if (page.length < 500) break;
    }
    if (!live) return;
    try {
      for await (const [event] of live as AsyncIterable<[SandboxEventRecord]>) {
        if (event.sequence <= last) continue;
        last = event.sequence;
        yield event;
      }
    } catch (err) {
      if (!signal.aborted) throw err;
    }
  }
}
