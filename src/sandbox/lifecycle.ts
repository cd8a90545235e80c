/**
 * Suspend and wake: a suspended sandbox's processes are frozen (cgroup freezer) and use no CPU; any call that
 * touches the guest wakes it first, concurrent wakes share one, reads never wake. Cleanroom's failure rules: a
 * failed suspend leaves the sandbox READY, a failed wake makes it FAILED (its host resources are released).
 * Idle sandboxes (no running execution, no guest call for `idleSuspendAfterMs`) are suspended in the background.
 */
import type { Backend } from "../backends/index.ts";
import { CleanroomError, messageOf } from "../errors/index.ts";
import type { Logger } from "../observability/index.ts";
import type { SandboxRecord, SandboxStatus } from "./records.ts";

/** What the lifecycle needs of the supervisor. */
export interface LifecycleHost {
  get(id: string): SandboxRecord;
  /** READY sandboxes handed to users (spares are never idle-suspended: they exist to be fast) */
  ready(): SandboxRecord[];
  setStatus(record: SandboxRecord, status: SandboxStatus, reason: string): void;
  backendOf(record: SandboxRecord): Backend;
  /** tears the sandbox down into FAILED */
  fail(record: SandboxRecord, reason: string): Promise<void>;
  /** ms since the epoch of the sandbox's newest execution start or finish; Infinity while one runs */
  executionActivity(id: string): number;
}

export interface LifecycleOptions {
  /** 0 disables idle suspend */
  idleSuspendAfterMs: number;
  wakeTimeoutMs: number;
  logger: Logger;
}

const MAX_IDLE_CHECK_MS = 5_000;

export class SandboxLifecycle {
  readonly #host: LifecycleHost;
  readonly #opts: LifecycleOptions;
  readonly #wakes = new Map<string, Promise<SandboxRecord>>();
  readonly #suspends = new Map<string, Promise<unknown>>();
  readonly #lastTouch = new Map<string, number>();
  #timer: NodeJS.Timeout | undefined;

  constructor(host: LifecycleHost, opts: LifecycleOptions) {
    this.#host = host;
    this.#opts = opts;
  }

  /** Starts the idle check (when idle suspend is on). */
  start(): void {
    if (!this.#opts.idleSuspendAfterMs || this.#timer) return;
    const every = Math.max(250, Math.min(MAX_IDLE_CHECK_MS, this.#opts.idleSuspendAfterMs / 4));
    this.#timer = setInterval(() => void this.#suspendIdle(), every);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Notes guest activity: the idle clock starts again. */
  touch(id: string): void {
    this.#lastTouch.set(id, Date.now());
  }

  forget(id: string): void {
    this.#lastTouch.delete(id);
  }

  async suspend(id: string, reason = "suspend requested"): Promise<SandboxRecord> {
    const record = this.#host.get(id);
    if (record.status === "SUSPENDED") return record;
    if (record.status !== "READY") throw new CleanroomError("failed_precondition", `sandbox ${id} is ${record.status}; only a READY sandbox can be suspended`);
    this.#host.setStatus(record, "SUSPENDING", reason);
    const started = performance.now();
    const freezing = this.#host.backendOf(record).setSuspended(id, true);
    this.#suspends.set(id, freezing.finally(() => this.#suspends.delete(id)).catch(() => undefined));
    try {
      await freezing;
    } catch (err) {
      this.#host.setStatus(record, "READY", `suspend failed: ${messageOf(err)}`);
      throw new CleanroomError("internal", `sandbox ${id} could not be suspended: ${messageOf(err)}`, { sandbox_id: id });
    }
    this.#host.setStatus(record, "SUSPENDED", reason);
    this.#opts.logger.info({ sandbox_id: id, reason, duration_ms: Math.round(performance.now() - started) }, "sandbox suspended");
    return record;
  }

  /** Wakes a SUSPENDED (or WAKING) sandbox; concurrent callers share one wake. A READY one is returned as it is. */
  async wake(id: string, reason = "resume requested"): Promise<SandboxRecord> {
    // a call arriving while the sandbox is being frozen wakes it once the freeze is done
    await this.#suspends.get(id);
    const record = this.#host.get(id);
    if (record.status !== "SUSPENDED" && record.status !== "WAKING") return record;
    let waking = this.#wakes.get(id);
    if (!waking) {
      waking = this.#wakeNow(record, reason).finally(() => this.#wakes.delete(id));
      this.#wakes.set(id, waking);
    }
    return waking;
  }

  /** The sandbox, READY: woken first if it is suspended (guest-touching calls go through here). */
  async awake(id: string): Promise<SandboxRecord> {
    const record = await this.wake(id, "woken by a call that touches the guest");
    if (record.status !== "READY") throw new CleanroomError("failed_precondition", `sandbox ${record.id} is ${record.status}, not READY`);
    this.touch(id);
    return record;
  }

  async #wakeNow(record: SandboxRecord, reason: string): Promise<SandboxRecord> {
    this.#host.setStatus(record, "WAKING", reason);
    const started = performance.now();
    let timer: NodeJS.Timeout | undefined;
    try {
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`not awake within ${this.#opts.wakeTimeoutMs} ms`)), this.#opts.wakeTimeoutMs);
      });
      await Promise.race([this.#host.backendOf(record).setSuspended(record.id, false), timeout]);
    } catch (err) {
      const why = `wake failed: ${messageOf(err)}`;
      await this.#host.fail(record, why).catch((cleanupErr) => this.#opts.logger.error({ sandbox_id: record.id, err: cleanupErr }, "cleanup after a failed wake"));
      throw new CleanroomError("runtime_launch_failed", `sandbox ${record.id}: ${why}`, { sandbox_id: record.id });
    } finally {
      clearTimeout(timer);
    }
    this.#host.setStatus(record, "READY", reason);
    this.touch(record.id);
    this.#opts.logger.info({ sandbox_id: record.id, reason, duration_ms: Math.round(performance.now() - started) }, "sandbox woken");
    return record;
  }

  async #suspendIdle(): Promise<void> {
    const now = Date.now();
    for (const record of this.#host.ready()) {
      const last = Math.max(this.#lastTouch.get(record.id) ?? Date.parse(record.updatedAt), this.#host.executionActivity(record.id));
      if (now - last < this.#opts.idleSuspendAfterMs) continue;
      await this.suspend(record.id, `idle for ${Math.round((now - last) / 1000)} s`).catch((err) => this.#opts.logger.warn({ sandbox_id: record.id, err: messageOf(err) }, "idle suspend failed"));
    }
  }
}
