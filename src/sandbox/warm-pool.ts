import type { Logger } from "../observability/index.ts";
import type { SandboxRecord } from "./records.ts";

/**
 * Spare sandboxes of the default shape, launched ahead of demand so that `exec` in a new sandbox skips
 * the ~100 ms launch (runc alone is ~70 ms on small hosts). A spare is never used twice: it is handed
 * out once and the pool launches a replacement in the background.
 */
export class WarmPool {
  readonly #size: number;
  readonly #launch: () => Promise<SandboxRecord>;
  readonly #log: Logger;
  readonly #spares: SandboxRecord[] = [];
  #filling: Promise<void> | undefined;

  constructor(opts: { size: number; launch: () => Promise<SandboxRecord>; logger: Logger }) {
    this.#size = Math.max(0, Math.floor(opts.size));
    this.#launch = opts.launch;
    this.#log = opts.logger;
  }

  /** Takes a spare back after a daemon restart; false when the pool is already full. */
  adopt(record: SandboxRecord): boolean {
    if (this.#spares.length >= this.#size) return false;
    this.#spares.push(record);
    return true;
  }

  /** Hands out a spare, oldest first. */
  take(): SandboxRecord | undefined {
    return this.#spares.shift();
  }

  /** Launches spares until the pool is full, one at a time; a failure stops filling until the next call. */
  fill(): void {
    if (this.#filling || this.#spares.length >= this.#size) return;
    this.#filling = (async () => {
      try {
        while (this.#spares.length < this.#size) this.#spares.push(await this.#launch());
      } catch (err) {
        this.#log.debug({ err }, "warm pool not filled");
      } finally {
        this.#filling = undefined;
      }
    })();
  }

  /** Waits for a fill in progress, then removes and returns every spare (for shutdown). */
  async drain(): Promise<SandboxRecord[]> {
    await this.#filling;
    return this.#spares.splice(0);
  }
}
