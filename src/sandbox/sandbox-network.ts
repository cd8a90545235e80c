import type { NetworkEvent, NetworkManager, SandboxNetwork, SandboxNetworkSpec } from "../network/index.ts";
import type { AllowRule } from "../policy/index.ts";
import type { SandboxEventLog } from "./event-log.ts";
import type { SandboxRecord } from "./records.ts";
import { repositoryHostRule } from "./repository-checkout.ts";

/** The stage in force once a sandbox is READY (the dependency and service stages come with blocks). */
const RUNNING_STAGE = "execution";

/** The allow rules of each stage: the policy's; without one, only the repository's own host while it is checked out. */
export function stageRulesOf(record: Pick<SandboxRecord, "policy" | "repository">): Record<string, AllowRule[]> {
  if (record.policy) return { ...record.policy.network.stages };
  return record.repository ? { repository: [repositoryHostRule(record.repository.remoteUrl)] } : {};
}

/** The stage of a READY sandbox: execution under a policy; none (no egress) without one. */
export function runningStageOf(record: Pick<SandboxRecord, "policy">): string | null {
  return record.policy ? RUNNING_STAGE : null;
}

/** What a sandbox may reach (its stages, or anything under --dangerously-allow-all), starting in `stage`. */
export function networkSpecOf(record: Pick<SandboxRecord, "id" | "policy" | "repository" | "dangerouslyAllowAll">, stage = runningStageOf(record)): SandboxNetworkSpec {
  return { sandboxId: record.id, stages: stageRulesOf(record), initialStage: stage, allowAll: record.dangerouslyAllowAll };
}

/**
 * The sandbox part's use of network/: per-sandbox netns and rules when a manager is configured, plain
 * loopback-only sandboxes when it is not (then allowlists cannot be enforced and policies needing them fail closed).
 */
export class SandboxNetworks {
  readonly #manager: NetworkManager | undefined;

  constructor(manager: NetworkManager | undefined, events: SandboxEventLog) {
    this.#manager = manager;
    manager?.events.on("event", (event) => recordNetworkEvent(events, event));
  }

  /** Whether allowlisted egress can be enforced at all. */
  get enforcesAllowlists(): boolean {
    return this.#manager !== undefined;
  }

  /** A new sandbox's network; a repository checkout starts in the repository stage. */
  setUp(record: SandboxRecord, checkingOut: boolean): Promise<SandboxNetwork | undefined> {
    const stage = checkingOut ? "repository" : runningStageOf(record);
    return this.#manager ? this.#manager.setUp(networkSpecOf(record, stage)) : Promise.resolve(undefined);
  }

  /** Switches the sandbox's egress to the stage a READY sandbox runs in (connections of the previous stage are cut). */
  async enterRunningStage(record: SandboxRecord): Promise<void> {
    await this.#manager?.activateStage(record.id, runningStageOf(record));
  }

  /** Switches the sandbox's egress to a creation stage (dependencies, services) while its blocks run. */
  async enterStage(record: SandboxRecord, stage: string): Promise<void> {
    await this.#manager?.activateStage(record.id, record.policy ? stage : null);
  }

  /** A running sandbox after a daemon restart: its rules and DNS listener come back. */
  async restore(record: SandboxRecord): Promise<void> {
    await this.#manager?.restore(networkSpecOf(record));
  }

  lookup(sandboxId: string): SandboxNetwork | undefined {
    return this.#manager?.lookup(sandboxId);
  }

  /** The sandbox whose (anti-spoofed) address is `sandboxAddress`. */
  sandboxAt(sandboxAddress: string): SandboxNetwork | undefined {
    return this.#manager?.sandboxAt(sandboxAddress);
  }

  async tearDown(sandboxId: string): Promise<void> {
    await this.#manager?.tearDown(sandboxId);
  }

  /** Removes the network of every sandbox not in `live`. */
  async reconcile(live: Iterable<string>): Promise<string[]> {
    return this.#manager ? (await this.#manager.reconcile(live)).removed : [];
  }

  /** Records the events of packets dropped until now (the kernel log is otherwise polled). */
  async flushEvents(): Promise<void> {
    await this.#manager?.flushEvents();
  }

  async close(): Promise<void> {
    await this.#manager?.close();
  }
}

function recordNetworkEvent(events: SandboxEventLog, event: NetworkEvent): void {
  if (event.type === "connection_blocked") {
    const where = event.port === null ? event.destination : `${event.destination}:${event.port}`;
    events.record(event.sandboxId, event.type, `blocked ${event.protocol} connection to ${where}`, {
      reasonCode: event.reason,
      attributes: { destination: event.destination, port: String(event.port ?? ""), protocol: event.protocol, target: event.target },
    });
  } else {
    events.record(event.sandboxId, event.type, `refused DNS query for ${event.name} (${event.queryType})`, {
      reasonCode: event.reason,
      attributes: { name: event.name, query_type: event.queryType },
    });
  }
}
