import { randomInt } from "node:crypto";
import { mkdir, rm } from "node:fs/promises";
import { join, resolve } from "node:path";
import { CleanroomError, isCleanroomError, messageOf } from "../errors/index.ts";
import { AddressPool, type AddressPair } from "./address-pool.ts";
import { listenSandboxDns, type DnsListener } from "./dns-server.ts";
import { respond } from "./dns-responder.ts";
import { parseDropRecord, parseKmsgRecord } from "./drop-log.ts";
import { enableIpv4Forwarding, ensureIpv4Forwarding } from "./host-forwarding.ts";
import { followKernelLog, type KernelLogReader } from "./kmsg-reader.ts";
import { settingsOf, type Settings } from "./manager-settings.ts";
import { allowSetName, dispatchMaps, hostInterfaceName, netnsPath, sandboxChainName, sandboxChainRoles, sandboxIdPattern, stageNamePattern } from "./names.ts";
import { createSandboxNetns, ensurePoolBlackhole, listSandboxNetnsIds, removeSandboxNetns, sandboxNetnsExists } from "./netns.ts";
import { compileNetworkSpec, type CompiledNetworkSpec } from "./network-spec.ts";
import { NetworkEventSink, type NetworkEvents } from "./network-events.ts";
import { nftTable, type NftTable } from "./nft.ts";
import { cleanroomMarkBit, renderElementRefresh, renderSandboxRemoval, renderSandboxSetup, renderStageSwitch, renderTableSetup, type SandboxRuleInput, type StageRuleInput } from "./nft-ruleset.ts";
import { renderResolvConf } from "./resolv-conf.ts";
import type { NetworkManagerOptions, SandboxNetwork, SandboxNetworkSpec } from "./types.ts";

/** Per-sandbox networks: netns + veth on a leased /30, nft chains and sets, a DNS policy server, drop events. */
export interface NetworkManager {
  /** All or nothing: on failure every address, rule, interface and socket taken is released. */
  setUp(spec: SandboxNetworkSpec): Promise<SandboxNetwork>;
  /**
   * After a daemon restart: re-attaches a running sandbox whose netns, veth and lease survived; its rules are
   * re-rendered (connections kept) and its DNS server restarted. `spec.initialStage` = the stage in force.
   */
  restore(spec: SandboxNetworkSpec): Promise<SandboxNetwork>;
  /** Atomically switches the allow set; connections the previous stage allowed are cut. null or an unknown stage = no egress. */
  activateStage(sandboxId: string, stage: string | null): Promise<void>;
  /** Idempotent; derives everything from names and the host, so it also cleans what a killed daemon left. */
  tearDown(sandboxId: string): Promise<void>;
  /** Tears down every sandbox of this manager that is not in `liveSandboxIds`; returns the ids removed. */
  reconcile(liveSandboxIds: Iterable<string>): Promise<{ removed: string[] }>;
  lookup(sandboxId: string): SandboxNetwork | undefined;
  /** The sandbox whose eth0 has `sandboxAddress`: its packets cannot carry another source (anti-spoof rules). */
  sandboxAt(sandboxAddress: string): SandboxNetwork | undefined;
  /** connection_blocked and dns_query_denied events of every sandbox of this manager */
  readonly events: NetworkEvents;
  /**
   * Emits the events of packets dropped until now. The kernel logs a drop as it happens, but the log is
   * polled; call this before reporting on something that just ended (e.g. an execution's exit).
   */
  flushEvents(): Promise<void>;
  /** Stops DNS listeners and the kernel log reader; sandboxes keep their netns and rules (a restart restores them). */
  close(): Promise<void>;
}

interface SandboxState {
  policy: CompiledNetworkSpec;
  pair: AddressPair;
  activeStage: string | null;
  mark: number;
  dns: DnsListener;
}

/** Creates the table (idempotent), turns on forwarding and starts the kernel log reader. Root only. */
export async function createNetworkManager(options: NetworkManagerOptions): Promise<NetworkManager> {
  const s = settingsOf(options, (dir) => resolve(dir));
  await mkdir(s.stateDir, { recursive: true, mode: 0o700 });
  const pool = await AddressPool.open(join(s.stateDir, "leases.json"), s.pool);
  const { guard } = await enableIpv4Forwarding(join(s.stateDir, "host.json"));
  const scratchDir = join(s.stateDir, "scratch");
  await rm(scratchDir, { recursive: true, force: true }); // scripts a killed daemon left behind
  const nft = nftTable(s.naming.table, scratchDir);
  await nft.apply(renderTableSetup({ ...s.naming, pool: s.pool, blockedCidrs: s.blockedCidrs, forwardGuard: guard }));
  await ensurePoolBlackhole(s.pool);
  const manager = new SandboxNetworks(s, pool, nft, scratchDir);
  if (s.dropLog) await manager.followDropLog();
  return manager;
}

class SandboxNetworks implements NetworkManager {
  readonly events: NetworkEvents;
  private readonly s: Settings;
  private readonly pool: AddressPool;
  private readonly nft: NftTable;
  private readonly scratchDir: string;
  private readonly sink = new NetworkEventSink();
  private readonly sandboxes = new Map<string, SandboxState>();
  private readonly locks = new Map<string, Promise<unknown>>();
  private kmsg: KernelLogReader | undefined;

  constructor(s: Settings, pool: AddressPool, nft: NftTable, scratchDir: string) {
    this.s = s;
    this.pool = pool;
    this.nft = nft;
    this.scratchDir = scratchDir;
    this.events = this.sink.events;
  }

  /** Kernel log lines of our drop rules become connection_blocked events of sandboxes we know. */
  async followDropLog(): Promise<void> {
    this.kmsg = await followKernelLog((raw) => {
      const record = parseKmsgRecord(raw);
      const packet = record && parseDropRecord(record);
      if (!packet || !this.sandboxes.has(packet.sandboxId) || packet.inInterface !== hostInterfaceName(this.s.naming, packet.sandboxId)) return;
      this.sink.blocked(packet);
    }).catch((err: unknown) => {
      this.s.logger.warn({ err: messageOf(err) }, "cannot read /dev/kmsg: blocked connections will not be reported");
      return undefined;
    });
  }

  async setUp(spec: SandboxNetworkSpec): Promise<SandboxNetwork> {
    const policy = compileNetworkSpec(spec, this.s.blocked);
    return this.withLock(policy.sandboxId, async () => {
      const id = policy.sandboxId;
      const started = performance.now();
      if (this.sandboxes.has(id) || this.pool.lookup(id) || (await listSandboxNetnsIds(this.s.naming)).includes(id)) {
        throw new CleanroomError("failed_precondition", `sandbox ${id} already has a network; tear it down (or reconcile) first`, { sandbox_id: id });
      }
      try {
        await ensureIpv4Forwarding();
        await using stack = new AsyncDisposableStack();
        const pair = await this.pool.reserve(id);
        stack.defer(() => this.pool.release(id));
        const mark = newMark();
        stack.defer(() => this.removeRules(id));
        stack.defer(() => removeSandboxNetns(this.s.naming, id, this.scratchDir));
        // side by side: nothing runs in the netns before setUp returns, and both are in place by then
        const made = await Promise.allSettled([
          this.nft.apply(renderSandboxSetup(this.s.naming, this.ruleInput(policy, pair), stageInput(policy, policy.initialStage, mark), policy.literals)),
          createSandboxNetns(this.s.naming, id, pair, this.scratchDir),
        ]);
        const failed = made.find((r) => r.status === "rejected");
        if (failed) throw failed.reason;
        const dns = await this.startDns(policy, pair);
        const st: SandboxState = { policy, pair, activeStage: policy.initialStage, mark, dns };
        this.sandboxes.set(id, st);
        stack.move();
        this.s.logger.info({ sandbox_id: id, sandbox_address: pair.sandboxAddress, setup_ms: Math.round(performance.now() - started), allow_all: policy.allowAll }, "sandbox network up");
        return this.handleOf(id, st);
      } catch (err) {
        throw new CleanroomError("runtime_launch_failed", `sandbox ${id}: network setup failed: ${setupFailure(err)}`, { sandbox_id: id });
      }
    });
  }

  async restore(spec: SandboxNetworkSpec): Promise<SandboxNetwork> {
    const policy = compileNetworkSpec(spec, this.s.blocked);
    return this.withLock(policy.sandboxId, async () => {
      const id = policy.sandboxId;
      const known = this.sandboxes.get(id);
      if (known) return this.handleOf(id, known);
      const pair = this.pool.lookup(id);
      if (!pair || !(await sandboxNetnsExists(this.s.naming, id))) {
        throw new CleanroomError("failed_precondition", `sandbox ${id}: its network did not survive (no lease, netns or veth); tear it down and create it again`, { sandbox_id: id });
      }
      // keep the mark of the stage in force, so a daemon restart does not cut the sandbox's connections
      const mark = (await currentMark(this.nft, id)) ?? newMark();
      await this.nft.apply(renderSandboxSetup(this.s.naming, this.ruleInput(policy, pair), stageInput(policy, policy.initialStage, mark), policy.literals));
      const dns = await this.startDns(policy, pair);
      const st: SandboxState = { policy, pair, activeStage: policy.initialStage, mark, dns };
      this.sandboxes.set(id, st);
      return this.handleOf(id, st);
    });
  }

  activateStage(sandboxId: string, stage: string | null): Promise<void> {
    return this.withLock(sandboxId, async () => {
      const st = this.sandboxes.get(sandboxId);
      if (!st) throw new CleanroomError("not_found", `sandbox ${sandboxId} has no network`, { sandbox_id: sandboxId });
      if (stage !== null && !stageNamePattern.test(stage)) throw new CleanroomError("invalid_argument", `stage ${JSON.stringify(stage)} must match ${stageNamePattern}`);
      if (stage === st.activeStage) return;
      const mark = newMark();
      await this.nft.apply(renderStageSwitch(this.s.naming, stageInput(st.policy, stage, mark)));
      st.activeStage = stage;
      st.mark = mark;
      this.s.logger.info({ sandbox_id: sandboxId, stage }, "sandbox egress stage switched");
    });
  }

  tearDown(sandboxId: string): Promise<void> {
    if (!sandboxIdPattern.test(sandboxId)) return Promise.reject(new CleanroomError("invalid_argument", `sandbox id ${JSON.stringify(sandboxId)} is not 12 characters of [a-z0-9]`));
    return this.withLock(sandboxId, () => this.release(sandboxId));
  }

  async reconcile(liveSandboxIds: Iterable<string>): Promise<{ removed: string[] }> {
    const live = new Set(liveSandboxIds);
    const found = new Set<string>([
      ...this.pool.sandboxIds(),
      ...(await listSandboxNetnsIds(this.s.naming)),
      ...(await this.nft.listSandboxObjects()).keys(),
      ...this.sandboxes.keys(),
    ]);
    const removed: string[] = [];
    const problems: string[] = [];
    for (const id of [...found].sort()) {
      if (live.has(id)) continue;
      try {
        await this.tearDown(id);
        removed.push(id);
      } catch (err) {
        problems.push(isCleanroomError(err) ? err.message : `${id}: ${messageOf(err)}`);
      }
    }
    if (removed.length) this.s.logger.info({ removed }, "network reconcile removed orphans");
    if (problems.length) throw new CleanroomError("internal", `network reconcile: ${problems.join("; ")}`, { removed, problems });
    return { removed };
  }

  lookup(sandboxId: string): SandboxNetwork | undefined {
    const st = this.sandboxes.get(sandboxId);
    return st ? this.handleOf(sandboxId, st) : undefined;
  }

  sandboxAt(sandboxAddress: string): SandboxNetwork | undefined {
    for (const [id, st] of this.sandboxes) if (st.pair.sandboxAddress === sandboxAddress) return this.handleOf(id, st);
    return undefined;
  }

  async flushEvents(): Promise<void> {
    await this.kmsg?.readNow();
  }

  async close(): Promise<void> {
    await this.kmsg?.close();
    this.kmsg = undefined;
    const open = [...this.sandboxes.values()];
    this.sandboxes.clear();
    await Promise.all(open.map((st) => st.dns.close()));
  }

  /** Releases everything of `id` in reverse order of setUp, each step even when an earlier one failed. */
  private async release(id: string): Promise<void> {
    const st = this.sandboxes.get(id);
    this.sandboxes.delete(id);
    this.sink.forget(id);
    const problems: string[] = [];
    const step = async (what: string, job: () => Promise<unknown>) => {
      try {
        await job();
      } catch (err) {
        problems.push(`${what}: ${messageOf(err)}`);
      }
    };
    if (st) await step("DNS listener", () => st.dns.close());
    await step("netns/veth", () => removeSandboxNetns(this.s.naming, id, this.scratchDir));
    await step("nft rules", () => this.removeRules(id, st?.policy));
    await step("address lease", () => this.pool.release(id));
    if (problems.length) {
      throw new CleanroomError("internal", `could not fully remove the network of sandbox ${id}: ${problems.join("; ")}`, { sandbox_id: id, problems });
    }
  }

  /** With `known` (the normal path) no listing is needed; after a crash or a failed attempt the table is asked. */
  private async removeRules(id: string, known?: CompiledNetworkSpec): Promise<void> {
    const hostIf = hostInterfaceName(this.s.naming, id);
    if (known) {
      const objects = {
        chains: sandboxChainRoles.map((r) => sandboxChainName(id, r)),
        sets: known.stages.map((stage) => allowSetName(id, stage)),
        dispatch: Object.values(dispatchMaps),
      };
      if (await this.nft.apply(renderSandboxRemoval(this.s.naming, hostIf, objects)).then(() => true, () => false)) return;
    }
    const present = (await this.nft.listSandboxObjects()).get(id);
    if (present) await this.nft.apply(renderSandboxRemoval(this.s.naming, hostIf, present));
  }

  private startDns(policy: CompiledNetworkSpec, pair: AddressPair): Promise<DnsListener> {
    const s = this.s;
    const id = policy.sandboxId;
    const context = {
      sandboxId: id,
      hostAddress: pair.hostAddress,
      gatewayName: s.gatewayName,
      names: policy.names,
      activeStage: () => this.sandboxes.get(id)?.activeStage ?? null,
      allowAll: () => policy.allowAll,
      resolver: s.resolver,
      blocked: s.blocked,
      ttlFloorS: s.ttlFloorS,
      ttlCapS: s.ttlCapS,
      addElements: (elements: Parameters<typeof renderElementRefresh>[2]) => this.nft.apply(renderElementRefresh(s.naming, id, elements)),
      onDenied: (name: string, queryType: string) => this.sink.dnsDenied(id, name, queryType),
      onProblem: (message: string, detail: Record<string, unknown>) => s.logger.warn(detail, message),
    };
    return listenSandboxDns({
      address: pair.hostAddress,
      port: s.dnsPort,
      clientAddress: pair.sandboxAddress,
      answer: (msg, maxBytes) => respond(context, msg, maxBytes),
      onProblem: (message, err) => s.logger.warn({ sandbox_id: id, err: messageOf(err) }, message),
    });
  }

  private handleOf(id: string, st: SandboxState): SandboxNetwork {
    return {
      sandboxId: id,
      netnsPath: netnsPath(this.s.naming, id),
      hostAddress: st.pair.hostAddress,
      sandboxAddress: st.pair.sandboxAddress,
      hostInterface: hostInterfaceName(this.s.naming, id),
      resolvConf: renderResolvConf(st.pair.hostAddress),
      activeStage: st.activeStage,
      allowAll: st.policy.allowAll,
    };
  }

  private ruleInput(policy: CompiledNetworkSpec, pair: AddressPair): SandboxRuleInput {
    return {
      sandboxId: policy.sandboxId,
      hostInterface: hostInterfaceName(this.s.naming, policy.sandboxId),
      hostAddress: pair.hostAddress,
      sandboxAddress: pair.sandboxAddress,
      gatewayPort: this.s.gatewayPort,
      dnsPort: this.s.dnsPort,
      stages: policy.stages,
    };
  }

  /** Operations on one sandbox run one after another; different sandboxes do not wait for each other. */
  private withLock<T>(id: string, job: () => Promise<T>): Promise<T> {
    const run = (this.locks.get(id) ?? Promise.resolve()).then(job, job);
    const tail = run.catch(() => {});
    this.locks.set(id, tail);
    void tail.then(() => this.locks.get(id) === tail && this.locks.delete(id));
    return run;
  }
}

function stageInput(policy: CompiledNetworkSpec, stage: string | null, mark: number): StageRuleInput {
  return { sandboxId: policy.sandboxId, activeStage: stage !== null && policy.stages.includes(stage) ? stage : null, allowAll: policy.allowAll, mark };
}

/** The setup error, and what its cleanup could not release (a failed release comes as a SuppressedError). */
function setupFailure(err: unknown): string {
  if (err instanceof SuppressedError) return `${setupFailure(err.suppressed)}; releasing what was taken also failed: ${setupFailure(err.error)}`;
  return messageOf(err);
}

/** A ct mark no other activation has (with 2^31 values, a stale conntrack entry never matches a new one). */
function newMark(): number {
  return (cleanroomMarkBit | randomInt(1, 0x7fffffff)) >>> 0;
}

/** The ct mark the sandbox's stage chain sets, if the chain exists. */
async function currentMark(nft: NftTable, sandboxId: string): Promise<number | undefined> {
  const rules = await nft.chainRules(sandboxChainName(sandboxId, "stage"));
  for (const rule of rules ?? []) {
    for (const stmt of rule) {
      const match = (stmt as { match?: { left?: { ct?: { key?: string } }; right?: unknown } }).match;
      if (match?.left?.ct?.key === "mark" && typeof match.right === "number" && (match.right & cleanroomMarkBit) !== 0) return match.right >>> 0;
    }
  }
  return undefined;
}
