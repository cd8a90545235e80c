import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Duplex } from "node:stream";
import { connectAgent, dialSandboxPort, SandboxFiles, type AgentClient } from "../agent-protocol/index.ts";
import type { Backend, BackendName } from "../backends/index.ts";
import type { BlockCache } from "../cache/index.ts";
import type { IdRange } from "../config/index.ts";
import { CleanroomError, isCleanroomError, messageOf } from "../errors/index.ts";
import { DEFAULT_BASE_IMAGE_REF, type ImageProgress, type ImageStore } from "../image/index.ts";
import type { GatewayAuditEvent, GatewayCaller } from "../gateway/index.ts";
import type { NetworkManager } from "../network/index.ts";
import type { Logger } from "../observability/index.ts";
import { requiredCapabilities, type CompiledPolicy } from "../policy/index.ts";
import { SandboxEventLog } from "./event-log.ts";
import { Snapshots } from "./snapshots.ts";
import { SandboxLifecycle } from "./lifecycle.ts";
import { ExecutionRunner, mergeEnv, type ExecutionInput, type ExecutionStreamItem } from "./execution-runner.ts";
import { EnvironmentBlocks, blocksOf, type BlockProgress, type BlockStep } from "./environment-blocks.ts";
import { newSandboxId, SANDBOX_ID_PATTERN } from "./ids.ts";
import { LIVE_SANDBOX_STATUSES, type ExecutionRecord, type RepositoryRecord, type ResourceOwner, type SandboxEventRecord, type SandboxRecord, type SandboxResources, type SandboxStatus, type SnapshotRecord } from "./records.ts";
import { bootstrapRepository, prepareCheckout, type RepositoryCheckoutInput, type RepositorySource } from "./repository-checkout.ts";
import { SandboxGateway, type GatewayAccess } from "./sandbox-gateway.ts";
import { SandboxNetworks } from "./sandbox-network.ts";
import { StateStore } from "./store.ts";
import { WarmPool } from "./warm-pool.ts";
import type { SandboxObserver, TraceParent } from "./observer.ts";

export interface SupervisorOptions {
  stateDir: string;
  images: ImageStore;
  backends: Partial<Record<BackendName, Backend>>;
  defaultBackend: BackendName;
  defaultResources: SandboxResources;
  /** how long a launch may take when the request does not say */
  defaultLaunchSeconds: number;
  /** spare sandboxes of the default shape kept ready (0 disables the pool) */
  warmPoolSize: number;
  /** per-sandbox netns, nftables and DNS policy; without it sandboxes get loopback only and allowlists cannot be enforced */
  network?: NetworkManager;
  /** the host gateway: sandboxes get its name in /etc/hosts and executions the env that points tools at it */
  gateway?: GatewayAccess;
  /** resolves repository checkouts and reads policy files at a commit (the gateway's Git mirrors) */
  repositories?: RepositorySource;
  /** where dependency and service block outputs are published; without it blocks always run */
  blockCache?: BlockCache;
  /** the sandbox id range layers are unpacked for (block outputs too) */
  idRange: IdRange;
  /** `minimum_cache_output_volume_bytes`: the least one block may publish */
  minimumOutputBytes: number;
  /** `sandbox_lifecycle.idle_suspend_after_seconds` (0: never) */
  idleSuspendAfterSeconds?: number;
  /** `sandbox_lifecycle.wake_timeout_seconds` */
  wakeTimeoutSeconds?: number;
  /** told of each creation and finished execution (the daemon's telemetry) */
  observer?: SandboxObserver;
  logger: Logger;
}

export interface CreateSandboxInput {
  /** verified by the caller (the API edge re-hashes what the client sent) */
  policy?: { policy: CompiledPolicy; hash: string };
  backend?: string;
  imageRef?: string;
  resources?: Partial<SandboxResources>;
  launchSeconds?: number;
  dangerouslyAllowAll?: boolean;
  labels?: Record<string, string>;
  /** check this repository out before READY; without `policy`, its policy comes from the commit */
  repository?: RepositoryCheckoutInput;
  /** start from this snapshot's filesystem (and its policy, unless `policy` is given) */
  fromSnapshot?: string;
  /** the authenticated principal creating it; executions and snapshots of the sandbox inherit it */
  owner?: ResourceOwner;
  /** the caller's trace: the creation's span is its child */
  trace?: TraceParent;
}

export type CreateProgress =
  | { phase: "resolve_image" | "provision" | "ready" | "resolve_repository" | "bootstrap_repository" | "restore_snapshot"; message: string }
  | { phase: "pull_image"; progress: ImageProgress }
  | BlockProgress;

/** pause between handing out a spare and launching its replacement */
const REFILL_DELAY_MS = 250;
const DEFAULT_WAKE_TIMEOUT_SECONDS = 30;
/** how long reconcile waits for a surviving sandbox's agent before declaring it dead */
const RECONNECT_TIMEOUT_MS = 3000;

/**
 * Owns every sandbox on this host: creates them from an image through a backend, keeps one agent
 * connection per sandbox, runs executions, terminates, and after a restart reconciles records with the host.
 */
export class SandboxSupervisor {
  readonly #opts: SupervisorOptions;
  readonly #store: StateStore;
  readonly #events: SandboxEventLog;
  readonly #runner: ExecutionRunner;
  readonly #agents = new Map<string, Promise<AgentClient>>();
  readonly #log: Logger;
  readonly #pool: WarmPool;
  readonly #networks: SandboxNetworks;
  readonly #gateway: SandboxGateway;
  readonly #blocks: EnvironmentBlocks | undefined;
  readonly #snapshots: Snapshots;
  readonly #lifecycle: SandboxLifecycle;

  private constructor(opts: SupervisorOptions, store: StateStore) {
    this.#opts = opts;
    this.#store = store;
    this.#log = opts.logger;
    this.#events = new SandboxEventLog(store);
    this.#networks = new SandboxNetworks(opts.network, this.#events);
    this.#gateway = new SandboxGateway(opts.gateway, this.#networks, (id) => this.#store.getSandbox(id), this.#events);
    this.#blocks = opts.blockCache && opts.repositories
      ? new EnvironmentBlocks({ cache: opts.blockCache, repositories: opts.repositories, idRange: opts.idRange, minimumOutputBytes: opts.minimumOutputBytes, events: this.#events, logger: opts.logger })
      : undefined;
    this.#snapshots = new Snapshots(store, join(opts.stateDir, "snapshots"), opts.logger);
    this.#lifecycle = new SandboxLifecycle({
      get: (id) => this.getSandbox(id),
      ready: () => this.#store.listSandboxes(["READY"]).filter((record) => !record.pooled),
      setStatus: (record, status, reason) => this.#setStatus(record, status, reason),
      backendOf: (record) => this.#backendOf(record),
      fail: (record, reason) => this.#teardown(record, "FAILED", reason),
      executionActivity: (id) => executionActivity(this.#runner.list(id, true)),
    }, { idleSuspendAfterMs: (opts.idleSuspendAfterSeconds ?? 0) * 1000, wakeTimeoutMs: (opts.wakeTimeoutSeconds ?? DEFAULT_WAKE_TIMEOUT_SECONDS) * 1000, logger: opts.logger });
    this.#pool = new WarmPool({ size: opts.warmPoolSize, launch: () => this.#launchNew({}, undefined, true), logger: opts.logger });
    this.#runner = new ExecutionRunner({
      store,
      outputDir: join(opts.stateDir, "executions"),
      agentFor: (sandboxId) => this.#agentFor(this.getSandbox(sandboxId)),
      events: this.#events,
      flushNetworkEvents: () => this.#networks.flushEvents(),
      ...(opts.observer ? { observer: opts.observer } : {}),
      logger: opts.logger,
    });
  }

  /** Opens the state database and reconciles it with what is actually running on the host. */
  static async open(opts: SupervisorOptions): Promise<SandboxSupervisor> {
    await mkdir(join(opts.stateDir, "executions"), { recursive: true, mode: 0o700 });
    const supervisor = new SandboxSupervisor(opts, new StateStore(join(opts.stateDir, "cleanroom.db")));
    await supervisor.#snapshots.open();
    await supervisor.#reconcile();
    supervisor.fillWarmPool();
    supervisor.#lifecycle.start();
    return supervisor;
  }

  /** Starts spare sandboxes in the background (e.g. once the default image exists). */
  fillWarmPool(): void {
    this.#pool.fill();
  }

  get executions(): ExecutionRunner {
    return this.#runner;
  }

  async createSandbox(input: CreateSandboxInput, onProgress: (p: CreateProgress) => void = () => {}): Promise<SandboxRecord> {
    if (input.fromSnapshot) return this.#fromSnapshot(input, input.fromSnapshot, onProgress);
    if (input.repository) return this.#launchNew(...(await this.#withRepository(input, input.repository, onProgress)), false, onProgress);
    const spare = this.#isDefaultShape(input) ? await this.#claimSpare(input) : undefined;
    if (spare) {
      onProgress({ phase: "ready", message: "ready (warm)" });
      return spare;
    }
    try {
      return await this.#launchNew(input, undefined, false, onProgress);
    } finally {
      this.#pool.fill();
    }
  }

  /** Resolves the checkout to a commit and settles the policy (the creator's, else the commit's) before launch. */
  async #withRepository(input: CreateSandboxInput, checkout: RepositoryCheckoutInput, onProgress: (p: CreateProgress) => void): Promise<[CreateSandboxInput, RepositoryRecord]> {
    if (!this.#networks.enforcesAllowlists) throw new CleanroomError("failed_precondition", "repository checkouts go through the gateway, which needs the daemon's sandbox networking");
    onProgress({ phase: "resolve_repository", message: `resolving ${checkout.remoteUrl} ${checkout.commit || "latest"}` });
    const prepared = await prepareCheckout(checkout, input.policy, this.#opts.repositories);
    for (const warning of prepared.warnings) this.#log.warn({ repository: prepared.repository.remoteUrl }, warning);
    const { policy: _sent, ...rest } = input;
    return [{ ...rest, ...(prepared.policy ? { policy: prepared.policy } : {}) }, prepared.repository];
  }

  /** A sandbox whose rootfs is the snapshot's stack; its repository is already there, its blocks already ran. */
  #fromSnapshot(input: CreateSandboxInput, snapshotId: string, onProgress: (p: CreateProgress) => void): Promise<SandboxRecord> {
    if (input.repository) throw new CleanroomError("invalid_argument", "a sandbox from a snapshot already holds its repository; leave out the repository checkout");
    const snapshot = this.#snapshots.get(snapshotId);
    const policy = input.policy ?? (snapshot.policy ? { policy: snapshot.policy, hash: snapshot.policyHash } : undefined);
    const { fromSnapshot: _from, ...rest } = input;
    // by digest: the tag may point elsewhere since
    return this.#launchNew({ ...rest, ...(policy ? { policy } : {}), imageRef: snapshot.imageDigest, backend: input.backend || snapshot.backend }, snapshot.repository, false, onProgress, snapshot);
  }

  async #launchNew(input: CreateSandboxInput, repository: RepositoryRecord | undefined, pooled: boolean, onProgress: (p: CreateProgress) => void = () => {}, snapshot?: SnapshotRecord): Promise<SandboxRecord> {
    const backend = this.#backend(input.backend);
    const policy = input.policy?.policy;
    if (policy) checkPolicySupported(policy, backend, this.#networks.enforcesAllowlists);
    const resources = this.#resources(input.resources, policy && policyFloors(policy));
    const imageRef = input.imageRef || policy?.image.ref || DEFAULT_BASE_IMAGE_REF;
    const now = new Date().toISOString();
    const record: SandboxRecord = {
      id: newSandboxId(),
      ...(input.owner ? { owner: input.owner } : {}),
      status: "PROVISIONING",
      backend: backend.name,
      imageRef,
      imageDigest: "",
      statusReason: "",
      createdAt: now,
      updatedAt: now,
      resources,
      policyHash: input.policy?.hash ?? "",
      dangerouslyAllowAll: input.dangerouslyAllowAll ?? false,
      labels: input.labels ?? {},
      ...(policy ? { policy } : {}),
      ...(pooled ? { pooled } : {}),
      ...(repository ? { repository } : {}),
      ...(snapshot ? { fromSnapshot: snapshot.id, cacheEntries: snapshot.cacheEntries } : {}),
    };
    // recorded before any host resource exists, so reconcile can always find what a crash left behind
    this.#store.putSandbox(record);
    const log = this.#log.child({ sandbox_id: record.id, ...(input.trace ? { trace_id: input.trace.traceId } : {}) });
    const startedAt = performance.now();
    const startTimeMs = Date.now();
    const observe = (reasonCode?: string) => this.#opts.observer?.sandboxCreated({
      sandboxId: record.id, backend: backend.name, startTimeMs, durationMs: performance.now() - startedAt,
      ...(input.trace ? { trace: input.trace } : {}), ...(reasonCode ? { reasonCode } : {}),
    });
    try {
      onProgress({ phase: "resolve_image", message: `resolving ${imageRef}` });
      const image = await this.#resolveImage(imageRef, onProgress);
      record.imageDigest = image.digest;
      record.imageDefaults = { env: image.config.env, workingDir: image.config.workingDir, user: image.config.user };
      const blocks = snapshot ? [] : await this.#planBlocks(record, onProgress);
      const lowerDirs = [...(await this.#opts.images.layerDirs(image)), ...(this.#blocks?.restoredLayers(blocks) ?? []), ...this.#snapshotLayers(snapshot, onProgress)];
      onProgress({ phase: "provision", message: `starting ${backend.name} sandbox` });
      const checkingOut = Boolean(repository && !snapshot);
      const networkStart = performance.now();
      const rootfsPrepMs = networkStart - startedAt;
      const network = await this.#networks.setUp(record, checkingOut);
      const launchStart = performance.now();
      const launched = await backend.launch({
        sandboxId: record.id,
        lowerDirs,
        imageConfig: { env: image.config.env, workingDir: image.config.workingDir, user: image.config.user },
        resources,
        ...(network ? { networkNamespacePath: network.netnsPath, resolvConf: network.resolvConf } : {}),
        extraHosts: this.#gateway.hostsFor(network),
      });
      const launchMs = (input.launchSeconds || this.#opts.defaultLaunchSeconds) * 1000;
      const agent = connectAgent(launched.agentSocketPath, { timeoutMs: launchMs });
      this.#agents.set(record.id, agent);
      await agent;
      record.createTimings = { rootfsPrepMs: roundMs(rootfsPrepMs), networkSetupMs: roundMs(launchStart - networkStart), readyMs: roundMs(performance.now() - launchStart) };
      if (checkingOut && repository) {
        await this.#checkOut(record, repository, await agent, image.config.user, blocks, onProgress);
        await this.#runBlocks(record, blocks, await agent, backend, onProgress);
        await this.#networks.enterRunningStage(record);
      }
      this.#setStatus(record, "READY", "");
      log.info({ image_digest: image.digest, duration_ms: Math.round(performance.now() - startedAt), ...record.createTimings }, "sandbox ready");
      observe();
      onProgress({ phase: "ready", message: "ready" });
      return record;
    } catch (err) {
      this.#agents.delete(record.id);
      await this.#release(record.id, backend).catch((cleanupErr) => log.error({ err: cleanupErr }, "cleanup after failed launch"));
      const reason = messageOf(err);
      this.#setStatus(record, "FAILED", reason);
      const reasonCode = isCleanroomError(err) ? err.code : "runtime_launch_failed";
      log.warn({ reason_code: reasonCode, reason }, "sandbox launch failed");
      observe(reasonCode);
      if (isCleanroomError(err)) throw err;
      throw new CleanroomError("runtime_launch_failed", `sandbox ${record.id} failed to start: ${reason}`, { sandbox_id: record.id });
    }
  }

  /** Keys the policy's blocks and finds the cached ones (before launch: their outputs are mounted as layers). */
  async #planBlocks(record: SandboxRecord, onProgress: (p: CreateProgress) => void): Promise<BlockStep[]> {
    const policy = record.policy;
    if (!policy || !blocksOf(policy).length) return [];
    const repository = record.repository;
    if (!repository) throw new CleanroomError("failed_precondition", "dependency and service blocks need the repository checked out (they are keyed on its files); create the sandbox from a checkout or with --repo-url");
    if (!this.#blocks) throw new CleanroomError("failed_precondition", "this daemon has no block cache and no repository mirror, so it cannot run dependency and service blocks");
    const steps = await this.#blocks.plan({ ...record, policy, repository }, onProgress);
    record.cacheEntries = steps.flatMap((s) => (s.hit ? [s.hit.id] : []));
    this.#store.putSandbox(record);
    if (record.cacheEntries.length) onProgress({ phase: "restore_cache", message: `restoring the outputs of ${record.cacheEntries.length} block(s) as layers` });
    return steps;
  }

  /** The blocks that missed run after the checkout, each under its own egress stage. */
  async #runBlocks(record: SandboxRecord, steps: BlockStep[], agent: AgentClient, backend: Backend, onProgress: (p: CreateProgress) => void): Promise<void> {
    const { policy, repository } = record;
    if (!this.#blocks || !policy || !repository || steps.every((s) => s.hit)) return;
    const defaults = record.imageDefaults ?? { env: [], workingDir: "", user: "" };
    await this.#blocks.runMisses(steps, {
      record: { ...record, policy, repository },
      agent,
      backend,
      activateStage: (stage) => this.#networks.enterStage(record, stage),
      env: mergeEnv(defaults.env, this.#gateway.environmentFor(record)),
      user: defaults.user,
      report: onProgress,
    });
  }

  /** The repository stage: the sandbox's git fetches through the gateway. */
  async #checkOut(record: SandboxRecord, repository: RepositoryRecord, agent: AgentClient, imageUser: string, blocks: BlockStep[], onProgress: (p: CreateProgress) => void): Promise<void> {
    onProgress({ phase: "bootstrap_repository", message: `checking out ${repository.remoteUrl} at ${repository.commit.slice(0, 12)} in ${repository.path}` });
    const startedAt = performance.now();
    const restored = blocks.flatMap((s) => s.hit?.paths ?? []);
    await bootstrapRepository(agent, repository, this.#gateway.environmentFor(record), imageUser || "root", restored);
    this.#events.record(record.id, "repository_checked_out", `checked out ${repository.remoteUrl} at ${repository.commit}`, {
      attributes: { remote_url: repository.remoteUrl, commit: repository.commit, branch: repository.branch ?? "", path: repository.path, duration_ms: String(Math.round(performance.now() - startedAt)) },
    });
  }

  getSandbox(id: string): SandboxRecord {
    const record = SANDBOX_ID_PATTERN.test(id) ? this.#store.getSandbox(id) : undefined;
    if (!record || record.pooled) throw new CleanroomError("not_found", `no sandbox with id "${id}"; list them with \`cleanroom sandbox ls\``);
    return record;
  }

  listSandboxes(all: boolean): SandboxRecord[] {
    return this.#store.listSandboxes(all ? undefined : LIVE_SANDBOX_STATUSES).filter((record) => !record.pooled);
  }

  recentEvents(id: string): SandboxEventRecord[] {
    return this.#events.recent(this.getSandbox(id).id);
  }

  streamEvents(id: string, afterSequence: number, follow: boolean, signal: AbortSignal): AsyncGenerator<SandboxEventRecord> {
    return this.#events.stream(this.getSandbox(id).id, afterSequence, follow, signal);
  }

  /** Freezes a READY sandbox: it keeps its memory and uses no CPU until a call touches it (or resumeSandbox). */
  suspendSandbox(id: string): Promise<SandboxRecord> {
    return this.#lifecycle.suspend(id);
  }

  resumeSandbox(id: string): Promise<SandboxRecord> {
    return this.#lifecycle.wake(id);
  }

  /** Wakes the sandbox of an execution before a call that reaches its process (signal, stdin, resize). */
  async wakeForExecution(executionId: string): Promise<void> {
    const sandboxId = this.#runner.get(executionId).sandboxId;
    // a finished execution of a terminated sandbox still answers (the runner says what became of it)
    await this.#lifecycle.wake(sandboxId, "woken by a call to one of its executions");
    this.#lifecycle.touch(sandboxId);
  }

  /** Stops the sandbox and releases every host resource it holds. With `wait: false`, returns once it is STOPPING. */
  async terminateSandbox(id: string, wait = true): Promise<SandboxRecord> {
    const record = this.getSandbox(id);
    if (record.status === "STOPPED" || record.status === "FAILED") return record;
    // frozen processes cannot die: thaw first (a failure here is teardown's to report)
    if (record.status === "SUSPENDED" || record.status === "SUSPENDING" || record.status === "WAKING") {
      await this.#backendOf(record).setSuspended(record.id, false).catch(() => undefined);
    }
    this.#lifecycle.forget(record.id);
    this.#setStatus(record, "STOPPING", "terminate requested");
    const teardown = this.#teardown(record, "STOPPED", "terminated");
    if (wait) await teardown;
    else teardown.catch(() => undefined);
    return record;
  }

  /** The layers a snapshot adds on top of its image: the block outputs it was stacked on, then its own writes. */
  #snapshotLayers(snapshot: SnapshotRecord | undefined, onProgress: (p: CreateProgress) => void): string[] {
    if (!snapshot) return [];
    onProgress({ phase: "restore_snapshot", message: `restoring snapshot ${snapshot.id} (${snapshot.name})` });
    const cache = this.#opts.blockCache;
    if (snapshot.cacheEntries.length && !cache) throw new CleanroomError("failed_precondition", `snapshot ${snapshot.id} stacks block outputs, and this daemon has no block cache`);
    return [...snapshot.cacheEntries.map((id) => cache!.layerDir({ id })), this.#snapshots.layerDir(snapshot.id)];
  }

  /** Copies a READY sandbox's filesystem (its writes over its image and block layers), frozen for the copy. */
  async createSnapshot(sandboxId: string, name: string): Promise<SnapshotRecord> {
    const sandbox = await this.#lifecycle.awake(sandboxId);
    const snapshot = await this.#snapshots.create(sandbox, this.#backendOf(sandbox), name);
    this.#events.record(sandbox.id, "snapshot_created", `snapshot ${snapshot.id} (${snapshot.name})`, { attributes: { snapshot_id: snapshot.id, disk_bytes: String(snapshot.diskBytes) } });
    return snapshot;
  }

  getSnapshot(id: string): SnapshotRecord {
    return this.#snapshots.get(id);
  }

  listSnapshots(): SnapshotRecord[] {
    return this.#snapshots.list();
  }

  /** Deletes a snapshot no live sandbox is made from. */
  async deleteSnapshot(id: string): Promise<SnapshotRecord> {
    const users = this.#store.listSandboxes(LIVE_SANDBOX_STATUSES).filter((s) => s.fromSnapshot === id).map((s) => s.id);
    if (users.length) throw new CleanroomError("failed_precondition", `snapshot ${id} is the base of live sandbox(es) ${users.join(", ")}; terminate them first`);
    return this.#snapshots.remove(id);
  }

  /** Every sandbox record, spares and terminated ones included (storage accounting). */
  allSandboxRecords(): SandboxRecord[] {
    return this.#store.listSandboxes();
  }

  /** Forgets a terminated sandbox: its record, events and execution records and artifacts. */
  async forgetSandbox(id: string): Promise<void> {
    const record = this.#store.getSandbox(id);
    if (!record || LIVE_SANDBOX_STATUSES.includes(record.status)) throw new CleanroomError("failed_precondition", `sandbox ${id} is not terminated`);
    for (const execution of this.#store.listExecutions({ sandboxId: id })) await rm(this.#runner.artifactsDir(execution.id), { recursive: true, force: true });
    this.#store.deleteSandbox(id);
  }

  /** Creates an execution in a READY sandbox and starts it. */
  async createExecution(input: ExecutionInput): Promise<ExecutionRecord> {
    const requestedAt = performance.now();
    const sandbox = await this.#lifecycle.awake(input.sandboxId);
    const defaults = sandbox.imageDefaults ?? { env: [], workingDir: "", user: "" };
    // a repository sandbox's commands run in the checkout, as they would in the developer's clone
    const workingDir = sandbox.repository?.path || defaults.workingDir;
    const timing = { requestedAt, ...(sandbox.createTimings ? { sandbox: sandbox.createTimings } : {}) };
    return this.#runner.start({ ...input, ...(sandbox.owner ? { owner: sandbox.owner } : {}), timing }, { ...defaults, workingDir, env: mergeEnv(defaults.env, this.#gateway.environmentFor(sandbox)) }, sandbox.policy?.run.before);
  }

  /** The files of a READY sandbox, resolved by its agent inside the sandbox's own mount namespace. */
  async files(id: string): Promise<SandboxFiles> {
    const sandbox = await this.#lifecycle.awake(id);
    return new SandboxFiles(await this.#agentFor(sandbox));
  }

  /** A TCP connection to `port` inside the sandbox (waking it first). */
  async dialPort(id: string, port: number): Promise<Duplex> {
    const sandbox = await this.#lifecycle.awake(id);
    return dialSandboxPort(await this.#agentFor(sandbox), port);
  }

  /** The gateway's question "which sandbox is calling?" (see SandboxGateway.callerAt). */
  gatewayCallerAt(remoteAddress: string, localAddress: string): GatewayCaller | undefined {
    return this.#gateway.callerAt(remoteAddress, localAddress);
  }

  recordGatewayAudit(event: GatewayAuditEvent): void {
    this.#gateway.recordAudit(event);
  }

  streamExecution(executionId: string, follow: boolean, signal: AbortSignal): AsyncGenerator<ExecutionStreamItem> {
    return this.#runner.stream(executionId, follow, signal);
  }

  /** Daemon shutdown: spares are removed; other sandboxes keep running and are picked up on the next start. */
  async close(): Promise<void> {
    this.#lifecycle.stop();
    for (const spare of await this.#pool.drain()) {
      await this.#teardown(spare, "STOPPED", "warm-pool spare removed at shutdown").catch(() => undefined);
    }
    await this.#runner.abandonAll("the daemon shut down while the execution was running");
    for (const agent of this.#agents.values()) agent.then((a) => a.close(), () => undefined);
    this.#agents.clear();
    await this.#networks.close();
    this.#store.close();
  }

  /** Releases every host resource of a sandbox: the backend's (mounts, container, cgroups), then its network. */
  async #release(sandboxId: string, backend: Backend): Promise<void> {
    try {
      await backend.destroy(sandboxId);
    } finally {
      await this.#networks.tearDown(sandboxId);
    }
  }

  async #teardown(record: SandboxRecord, finalStatus: SandboxStatus, reason: string): Promise<void> {
    const log = this.#log.child({ sandbox_id: record.id });
    await this.#runner.abandonSandbox(record.id, "the sandbox was terminated");
    const agent = this.#agents.get(record.id);
    this.#agents.delete(record.id);
    agent?.then((a) => a.close(), () => undefined);
    try {
      await this.#release(record.id, this.#backendOf(record));
      this.#setStatus(record, finalStatus, reason);
      log.info("sandbox stopped");
    } catch (err) {
      this.#setStatus(record, "FAILED", `teardown failed: ${messageOf(err)}`);
      log.error({ err }, "sandbox teardown failed");
      throw err;
    }
  }

  async #resolveImage(ref: string, onProgress: (p: CreateProgress) => void) {
    const images = this.#opts.images;
    const local = await images.resolveLocal(ref);
    if (local) return local;
    if (ref === DEFAULT_BASE_IMAGE_REF) {
      throw new CleanroomError("image_not_found", `the default image ${ref} has not been built on this host yet; run \`cleanroom system warmup\` once (it builds it from your apt mirror)`);
    }
    return images.ensure(ref, { onProgress: (progress) => onProgress({ phase: "pull_image", progress }) });
  }

  /** The agent connection of a READY sandbox, reconnecting if the previous one dropped. */
  #agentFor(record: SandboxRecord): Promise<AgentClient> {
    const existing = this.#agents.get(record.id);
    if (existing) return existing;
    const socket = this.#backendOf(record).agentSocketPath(record.id);
    const connecting = connectAgent(socket, { timeoutMs: RECONNECT_TIMEOUT_MS });
    this.#agents.set(record.id, connecting);
    connecting.then(
      (agent) => agent.closed.then(() => {
        if (this.#agents.get(record.id) === connecting) this.#agents.delete(record.id);
      }),
      () => this.#agents.delete(record.id),
    );
    return connecting;
  }

  #setStatus(record: SandboxRecord, status: SandboxStatus, reason: string): void {
    record.status = status;
    record.statusReason = reason;
    record.updatedAt = new Date().toISOString();
    this.#store.putSandbox(record);
    this.#events.record(record.id, "status", `${status}${reason ? `: ${reason}` : ""}`, { attributes: { status } });
  }

  /** Requests a spare can serve: default image, backend and resources, restricted egress. */
  #isDefaultShape(input: CreateSandboxInput): boolean {
    const resources = this.#resources(input.resources);
    const base = this.#opts.defaultResources;
    return (
      !input.policy &&
      (!input.imageRef || input.imageRef === DEFAULT_BASE_IMAGE_REF) &&
      (!input.backend || input.backend === this.#opts.defaultBackend) &&
      !input.dangerouslyAllowAll &&
      resources.vcpus === base.vcpus && resources.memoryMiB === base.memoryMiB && resources.pidsLimit === base.pidsLimit
    );
  }

  /** Hands a live spare to the caller as a new sandbox; spares that died meanwhile are removed. */
  async #claimSpare(input: CreateSandboxInput): Promise<SandboxRecord | undefined> {
    for (let spare = this.#pool.take(); spare; spare = this.#pool.take()) {
      if ((await this.#backendOf(spare).state(spare.id)) !== "running") {
        await this.#teardown(spare, "STOPPED", "warm-pool spare died before use").catch(() => undefined);
        continue;
      }
      const now = new Date().toISOString();
      delete spare.pooled;
      spare.createdAt = now;
      spare.labels = input.labels ?? {};
      if (input.owner) spare.owner = input.owner;
      this.#setStatus(spare, "READY", "");
      // the replacement's mount and runc would compete with the caller's first command for the CPU
      setTimeout(() => this.#pool.fill(), REFILL_DELAY_MS).unref();
      return spare;
    }
    return undefined;
  }

  #backend(name: string | undefined): Backend {
    const wanted = (name || this.#opts.defaultBackend) as BackendName;
    const backend = this.#opts.backends[wanted];
    if (!backend) {
      const known = Object.keys(this.#opts.backends).join(", ");
      throw new CleanroomError("backend_unavailable", `backend "${wanted}" is not available on this host (available: ${known}); see \`cleanroom doctor\``);
    }
    return backend;
  }

  #backendOf(record: SandboxRecord): Backend {
    return this.#backend(record.backend);
  }

  /** Requested and policy values are floors: they raise the host defaults, never lower them. */
  #resources(...floors: (Partial<SandboxResources> | undefined)[]): SandboxResources {
    const base = this.#opts.defaultResources;
    const highest = (key: keyof SandboxResources) => Math.max(base[key], ...floors.map((floor) => floor?.[key] ?? 0));
    return { vcpus: highest("vcpus"), memoryMiB: highest("memoryMiB"), pidsLimit: highest("pidsLimit") };
  }

  /** After a restart (clean or kill -9): surviving sandboxes come back READY, dead ones FAILED, orphans removed. */
  async #reconcile(): Promise<void> {
    this.#runner.failInterrupted("the daemon restarted while the execution was running");
    const known = new Set<string>();
    for (const record of this.#store.listSandboxes(LIVE_SANDBOX_STATUSES)) {
      known.add(record.id);
      await this.#reconcileSandbox(record).catch((err) => this.#log.error({ sandbox_id: record.id, err }, "reconcile failed"));
    }
    // backends may share one state dir (linux and gvisor do): each orphan is released once, by its record's backend
    const orphans = new Map<string, string>();
    for (const [name, backend] of Object.entries(this.#opts.backends)) {
      for (const id of await backend.listSandboxIds()) {
        const record = this.#store.getSandbox(id);
        if (record?.status === "READY" || record?.status === "SUSPENDED" || orphans.has(id)) continue;
        orphans.set(id, record && record.backend in this.#opts.backends ? record.backend : name);
      }
    }
    for (const [id, name] of orphans) {
      this.#log.warn({ sandbox_id: id, backend: name, had_record: known.has(id) }, "removing orphaned sandbox resources");
      await this.#release(id, this.#opts.backends[name as BackendName]!).catch((err) => this.#log.error({ sandbox_id: id, err }, "orphan removal failed"));
    }
    const live = this.#store.listSandboxes(["READY", "SUSPENDED"]).map((record) => record.id);
    for (const id of await this.#networks.reconcile(live)) this.#log.warn({ sandbox_id: id }, "removed an orphaned sandbox network");
  }

  async #reconcileSandbox(record: SandboxRecord): Promise<void> {
    const backend = this.#opts.backends[record.backend as BackendName];
    if (!backend) {
      this.#setStatus(record, "FAILED", `backend ${record.backend} is not available after restart`);
      return;
    }
    const running = (await backend.state(record.id)) === "running";
    if (running && record.status === "SUSPENDED") {
      // frozen: its agent answers only once woken, so only the network comes back now
      try {
        await this.#networks.restore(record);
        this.#log.info({ sandbox_id: record.id }, "suspended sandbox survived the restart");
        return;
      } catch (err) {
        await this.#release(record.id, backend);
        this.#setStatus(record, "FAILED", `the suspended sandbox could not be reattached after the daemon restarted: ${messageOf(err)}`);
        return;
      }
    }
    if (running && (record.status === "SUSPENDING" || record.status === "WAKING")) {
      await backend.setSuspended(record.id, false).catch(() => undefined);
      this.#setStatus(record, "READY", `the daemon restarted while the sandbox was ${record.status}; it was thawed`);
    }
    if (record.status === "READY" && running) {
      try {
        await this.#agentFor(record);
        await this.#networks.restore(record);
        this.#log.info({ sandbox_id: record.id, pooled: Boolean(record.pooled) }, "sandbox survived the restart");
        if (!record.pooled || this.#pool.adopt(record)) return;
        await this.#teardown(record, "STOPPED", "surplus warm-pool spare");
        return;
      } catch (err) {
        this.#agents.delete(record.id);
        await this.#release(record.id, backend);
        this.#setStatus(record, "FAILED", `the sandbox could not be reattached after the daemon restarted: ${messageOf(err)}`);
        return;
      }
    }
    const wasStopping = record.status === "STOPPING";
    await this.#release(record.id, backend);
    if (wasStopping) this.#setStatus(record, "STOPPED", "terminated (finished after the daemon restarted)");
    else this.#setStatus(record, "FAILED", record.status === "READY" ? "the sandbox was no longer running when the daemon restarted" : `the daemon restarted while the sandbox was ${record.status}`);
  }
}

function roundMs(ms: number): number {
  return Math.round(ms * 10) / 10;
}

/** Fails closed when the policy needs enforcement the backend lacks. */
function checkPolicySupported(policy: CompiledPolicy, backend: Backend, enforcesAllowlists: boolean): void {
  // allowlists are enforced by network/ around whatever the backend runs, when the daemon has a network manager
  const capabilities: Record<string, boolean> = { ...backend.capabilities(), "network.allowlist_egress": enforcesAllowlists };
  const missing = requiredCapabilities(policy).filter((capability) => !capabilities[capability]);
  if (missing.length) {
    throw new CleanroomError("backend_capability_mismatch", `the ${backend.name} backend cannot enforce what this policy needs: ${missing.join(", ")}; see \`cleanroom doctor\``, { missing });
  }
}

/** The policy's `sandbox.resources` in the daemon's units. */
function policyFloors(policy: CompiledPolicy): Partial<SandboxResources> {
  return {
    vcpus: policy.resources.vcpus ?? 0,
    memoryMiB: policy.resources.memoryBytes !== undefined ? Math.ceil(policy.resources.memoryBytes / 1024 ** 2) : 0,
  };
}

/** When a sandbox's executions last did something: Infinity while one runs. */
function executionActivity(executions: ExecutionRecord[]): number {
  let last = 0;
  for (const execution of executions) {
    if (execution.status === "QUEUED" || execution.status === "RUNNING") return Infinity;
    last = Math.max(last, Date.parse(execution.finishedAt ?? execution.createdAt) || 0);
  }
  return last;
}
