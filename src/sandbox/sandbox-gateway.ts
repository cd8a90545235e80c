import { GATEWAY_HOSTNAME, type GatewayAuditEvent, type GatewayCaller } from "../gateway/index.ts";
import type { SandboxNetwork } from "../network/index.ts";
import type { SandboxEventLog } from "./event-log.ts";
import type { SandboxRecord } from "./records.ts";
import { stageRulesOf, type SandboxNetworks } from "./sandbox-network.ts";

/** What the sandbox part uses of the running gateway (its port is already admitted by the network rules). */
export interface GatewayAccess {
  guestEnvironment(caller: Pick<GatewayCaller, "rules" | "allowAll">): string[];
}

/**
 * The sandbox part's side of the gateway: which sandbox a connection comes from (by its anti-spoofed source
 * address, and only at its own host address), what its active stage allows, the environment that points its
 * tools at the gateway, and the audit trail on its event stream.
 */
export class SandboxGateway {
  readonly #gateway: GatewayAccess | undefined;
  readonly #networks: SandboxNetworks;
  readonly #record: (id: string) => SandboxRecord | undefined;
  readonly #events: SandboxEventLog;

  constructor(gateway: GatewayAccess | undefined, networks: SandboxNetworks, record: (id: string) => SandboxRecord | undefined, events: SandboxEventLog) {
    this.#gateway = gateway;
    this.#networks = networks;
    this.#record = record;
    this.#events = events;
  }

  /** The caller behind a gateway connection, or undefined (not a live sandbox, or another sandbox's address reached). */
  callerAt(remoteAddress: string, localAddress: string): GatewayCaller | undefined {
    const network = this.#networks.sandboxAt(remoteAddress);
    if (!network || network.hostAddress !== localAddress) return undefined;
    const record = this.#record(network.sandboxId);
    if (!record || (record.status !== "READY" && record.status !== "PROVISIONING")) return undefined;
    return callerOf(record, network);
  }

  /** /etc/hosts entries of a sandbox: the gateway's name at its host address. */
  hostsFor(network: SandboxNetwork | undefined): Record<string, string> {
    return this.#gateway && network ? { [GATEWAY_HOSTNAME]: network.hostAddress } : {};
  }

  /** Env entries that point an execution's tools at the gateway, for what the sandbox's active stage allows. */
  environmentFor(record: SandboxRecord): string[] {
    const network = this.#networks.lookup(record.id);
    return this.#gateway && network ? this.#gateway.guestEnvironment(callerOf(record, network)) : [];
  }

  recordAudit(event: GatewayAuditEvent): void {
    const verb = event.action === "allow" ? "served" : "refused";
    this.#events.record(event.sandboxId, "gateway_request", `gateway ${verb} ${event.method} ${event.service} ${event.destinationHost || event.path}`, {
      reasonCode: event.reasonCode,
      attributes: {
        service: event.service,
        destination_host: event.destinationHost,
        action: event.action,
        method: event.method,
        path: event.path,
        status: String(event.status),
        bytes: String(event.bytes),
        duration_ms: String(event.durationMs),
      },
    });
  }
}

function callerOf(record: SandboxRecord, network: SandboxNetwork): GatewayCaller {
  const stage = network.activeStage;
  return { sandboxId: record.id, stage, rules: (stage && stageRulesOf(record)[stage]) || [], allowAll: network.allowAll };
}
