import { randomBytes } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { constants as osConstants } from "node:os";
import type { AgentClient } from "../agent-protocol/index.ts";
import { CleanroomError, isCleanroomError } from "../errors/index.ts";
import type { Logger } from "../observability/index.ts";
import type { SandboxEventLog } from "./event-log.ts";
import { EXECUTION_ID_PATTERN, newExecutionId } from "./ids.ts";
import { LiveExecution } from "./live-execution.ts";
import { OutputLogWriter, readOutputLog, tailOutputLog, type OutputChunk } from "./output-log.ts";
import type { SandboxObserver, TraceParent } from "./observer.ts";
import { FINISHED_EXECUTION_STATUSES, type ExecutionRecord, type ExecutionTimings, type ImageDefaults, type ResourceOwner, type SandboxCreateTimings } from "./records.ts";
import type { StateStore } from "./store.ts";

export interface ExecutionInput {
  sandboxId: string;
  command: string[];
  shell?: boolean;
  env?: string[];
  cwd?: string;
  user?: string;
  tty?: { rows: number; cols: number };
  attachStdin?: boolean;
  timeoutSeconds?: number;
  /** leave out the policy's sandbox.run.before (the daemon's own commands, or a caller who asks) */
  skipRunBefore?: boolean;
  /** the sandbox's owner, which the execution inherits */
  owner?: ResourceOwner;
  /** the caller's trace (its `traceparent`); without one the execution gets a trace id of its own */
  trace?: TraceParent;
  /** when the request arrived (performance.now()) and what the sandbox's creation took: the execution's timings */
  timing?: { requestedAt: number; sandbox?: SandboxCreateTimings };
}

export type ExecutionStreamItem = { output: OutputChunk } | { exit: ExecutionRecord; networkWarnings: string[] };

const NETWORK_EVENT_TYPES = ["connection_blocked", "dns_query_denied", "gateway_request"] as const;
const MAX_NETWORK_WARNINGS = 20;

const MAX_COMMAND_ARGS = 4096;
const MAX_COMMAND_BYTES = 256 * 1024;
/**
 * `sandbox.run.before` ahead of the command, in the same process tree: services it starts in the background stay
 * up for the command, and when it fails the command does not run and its exit status is the execution's.
 */
const RUN_BEFORE_WRAPPER = String.raw`before=$1; shift
/bin/sh -lc "$before" || { status=$?; echo "cleanroom: sandbox.run.before failed with exit status $status" >&2; exit $status; }
exec "$@"`;
/** how long abandoning a sandbox waits for its killed executions to settle */
const ABANDON_WAIT_MS = 2000;

/** Starts executions through a sandbox's agent and serves their records and durable output. */
export class ExecutionRunner {
  readonly #store: StateStore;
  readonly #outputDir: string;
  readonly #agentFor: (sandboxId: string) => Promise<AgentClient>;
  readonly #events: SandboxEventLog;
  readonly #log: Logger;
  readonly #flushNetworkEvents: () => Promise<void>;
  readonly #observer: SandboxObserver | undefined;
  readonly #live = new Map<string, LiveExecution>();

  constructor(opts: {
    store: StateStore;
    outputDir: string;
    agentFor: (sandboxId: string) => Promise<AgentClient>;
    events: SandboxEventLog;
    /** makes pending network events visible before an exit reports them */
    flushNetworkEvents: () => Promise<void>;
    observer?: SandboxObserver;
    logger: Logger;
  }) {
    this.#observer = opts.observer;
    this.#flushNetworkEvents = opts.flushNetworkEvents;
    this.#store = opts.store;
    this.#outputDir = opts.outputDir;
    this.#agentFor = opts.agentFor;
    this.#events = opts.events;
    this.#log = opts.logger;
  }

  /** Starts `input` with the image's env, working dir and user as defaults the request may override. */
  async start(input: ExecutionInput, image: ImageDefaults = { env: [], workingDir: "", user: "" }, runBefore?: string): Promise<ExecutionRecord> {
    validateCommand(input);
    const requestedAt = input.timing?.requestedAt ?? performance.now();
    const startTimeMs = Date.now() - (performance.now() - requestedAt);
    const command = input.shell ? ["/bin/sh", "-lc", input.command[0]!] : input.command;
    const cwd = input.cwd || image.workingDir;
    const user = input.user || image.user;
    const record: ExecutionRecord = {
      id: newExecutionId(),
      ...(input.owner ? { owner: input.owner } : {}),
      sandboxId: input.sandboxId,
      status: "QUEUED",
      interactive: Boolean(input.tty || input.attachStdin),
      command,
      cwd,
      tty: Boolean(input.tty),
      exitCode: null,
      signal: "",
      statusReason: "",
      createdAt: new Date().toISOString(),
      startedAt: null,
      finishedAt: null,
      stdoutBytes: 0,
      stderrBytes: 0,
      traceId: input.trace?.traceId ?? randomBytes(16).toString("hex"),
    };
    this.#store.putExecution(record);
    const executionLog = this.#log.child({ trace_id: record.traceId, sandbox_id: record.sandboxId, execution_id: record.id });
    const dir = this.artifactsDir(record.id);
    let log: OutputLogWriter | undefined;
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      log = await OutputLogWriter.create(join(dir, "output.log"));
      const agent = await this.#agentFor(input.sandboxId);
      const process = agent.exec({
        argv: runBefore && !input.skipRunBefore ? ["/bin/sh", "-c", RUN_BEFORE_WRAPPER, "sh", runBefore, ...command] : command,
        env: mergeEnv(image.env, input.env ?? []),
        ...(cwd ? { cwd } : {}),
        ...(user ? { user } : {}),
        ...(input.tty ? { tty: input.tty } : {}),
        stdin: Boolean(input.attachStdin),
      });
      record.status = "RUNNING";
      record.startedAt = new Date().toISOString();
      const commandStart = performance.now();
      let finishedAt = commandStart;
      this.#store.putExecution(record);
      const live = new LiveExecution(record, process, log, {
        timeoutSeconds: input.timeoutSeconds ?? 0,
        // called once, when it settles: the timings go into that one write
        onChange: (changed) => {
          finishedAt = performance.now();
          changed.timings = executionTimings(input.timing?.sandbox, finishedAt - commandStart, finishedAt - requestedAt);
          this.#store.putExecution(changed);
        },
      });
      this.#live.set(record.id, live);
      this.#events.record(record.sandboxId, "execution_started", command.join(" ").slice(0, 200), { attributes: { execution_id: record.id } });
      live.finished.then((done) => {
        void this.#writeObservability(done).catch((err: unknown) => executionLog.warn({ err }, "could not write execution-observability.json"));
        this.#live.delete(done.id);
        this.#events.record(done.sandboxId, "execution_finished", `${done.status}: ${done.statusReason}`, {
          attributes: { execution_id: done.id, exit_code: String(done.exitCode ?? "") },
        });
        executionLog.info({ status: done.status, exit_code: done.exitCode, ...done.timings }, "execution finished");
        this.#observer?.executionFinished({ record: done, ...(input.trace ? { trace: input.trace } : {}), startTimeMs, durationMs: finishedAt - requestedAt });
      });
      return record;
    } catch (err) {
      await log?.close();
      record.status = "FAILED";
      record.statusReason = `could not start: ${err instanceof Error ? err.message : String(err)}`;
      record.finishedAt = new Date().toISOString();
      this.#store.putExecution(record);
      executionLog.warn({ reason_code: isCleanroomError(err) ? err.code : "runtime_launch_failed", reason: record.statusReason }, "execution could not start");
      throw err;
    }
  }

  /** `execution-observability.json` in the execution's artifacts dir: its ids and where its time went. */
  async #writeObservability(record: ExecutionRecord): Promise<void> {
    const t = record.timings;
    const body = {
      execution_id: record.id,
      sandbox_id: record.sandboxId,
      trace_id: record.traceId ?? "",
      timings_ms: t ? { rootfs_prep: t.rootfsPrepMs, network_setup: t.networkSetupMs, ready: t.readyMs, command: t.commandMs, total: t.totalMs } : {},
    };
    await writeFile(join(this.artifactsDir(record.id), "execution-observability.json"), `${JSON.stringify(body, null, 2)}\n`, { mode: 0o600 });
  }

  get(id: string): ExecutionRecord {
    const live = this.#live.get(id);
    if (live) return live.record;
    const record = EXECUTION_ID_PATTERN.test(id) ? this.#store.getExecution(id) : undefined;
    if (!record) throw new CleanroomError("not_found", `no execution with id "${id}"; list them with \`cleanroom execution ls\``);
    return record;
  }

  list(sandboxId: string | undefined, all: boolean): ExecutionRecord[] {
    return this.#store
      .listExecutions({ ...(sandboxId ? { sandboxId } : {}), ...(all ? {} : { statuses: ["QUEUED", "RUNNING"] }) })
      .map((record) => this.#live.get(record.id)?.record ?? record);
  }

  artifactsDir(id: string): string {
    return join(this.#outputDir, id);
  }

  async tail(id: string, maxBytes: number): Promise<{ stdout: Buffer; stderr: Buffer }> {
    this.get(id);
    if (maxBytes <= 0) return { stdout: Buffer.alloc(0), stderr: Buffer.alloc(0) };
    return tailOutputLog(join(this.artifactsDir(id), "output.log"), maxBytes).catch(() => ({ stdout: Buffer.alloc(0), stderr: Buffer.alloc(0) }));
  }

  /** Output recorded so far, then (with follow) live output, then the final record. */
  async *stream(id: string, follow: boolean, signal: AbortSignal): AsyncGenerator<ExecutionStreamItem> {
    this.get(id);
    const live = this.#live.get(id);
    const path = join(this.artifactsDir(id), "output.log");
    try {
      for await (const output of readOutputLog(path, follow ? live?.outputLog : undefined, signal)) yield { output };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
    if (follow && live) await live.finished;
    const final = this.get(id);
    if (!FINISHED_EXECUTION_STATUSES.includes(final.status)) return;
    await this.#flushNetworkEvents().catch(() => undefined);
    yield { exit: final, networkWarnings: this.#networkWarnings(final) };
  }

  cancel(id: string, signalNumber: number): ExecutionRecord {
    const live = this.#requireLive(id);
    live.cancel(signalName(signalNumber));
    return live.record;
  }

  writeStdin(id: string, data: Uint8Array): Promise<void> {
    return this.#requireLive(id).writeStdin(data);
  }

  closeStdin(id: string): void {
    this.#requireLive(id).closeStdin();
  }

  resize(id: string, rows: number, cols: number): void {
    if (rows < 1 || cols < 1 || rows > 10_000 || cols > 10_000) throw new CleanroomError("invalid_argument", `terminal size ${rows}x${cols} is out of range`);
    this.#requireLive(id).resize(rows, cols);
  }

  /** Kills the sandbox's running executions and waits (bounded) for them to settle. */
  async abandonSandbox(sandboxId: string, reason: string): Promise<void> {
    const mine = [...this.#live.values()].filter((live) => live.record.sandboxId === sandboxId);
    await this.#abandon(mine, reason);
  }

  async abandonAll(reason: string): Promise<void> {
    await this.#abandon([...this.#live.values()], reason);
  }

  /** At start-up: executions the previous daemon was running cannot be resumed. */
  failInterrupted(reason: string): void {
    for (const record of this.#store.listExecutions({ statuses: ["QUEUED", "RUNNING"] })) {
      record.status = "FAILED";
      record.statusReason = reason;
      record.finishedAt = new Date().toISOString();
      this.#store.putExecution(record);
    }
  }

  async #abandon(executions: LiveExecution[], reason: string): Promise<void> {
    for (const live of executions) {
      live.record.statusReason = reason;
      live.cancel("SIGKILL");
    }
    const timeout = new Promise((resolve) => setTimeout(resolve, ABANDON_WAIT_MS).unref());
    await Promise.race([Promise.allSettled(executions.map((live) => live.finished)), timeout]);
  }

  /** What the network policy blocked in the execution's sandbox while it ran. */
  #networkWarnings(record: ExecutionRecord): string[] {
    if (!record.startedAt) return [];
    const events = this.#events
      .since(record.sandboxId, record.startedAt, NETWORK_EVENT_TYPES)
      .filter((event) => event.type !== "gateway_request" || event.attributes.action === "deny");
    return events.slice(0, MAX_NETWORK_WARNINGS).map((event) => `${event.message} (${event.reasonCode})`);
  }

  #requireLive(id: string): LiveExecution {
    const live = this.#live.get(id);
    if (live) return live;
    const record = this.get(id);
    throw new CleanroomError("failed_precondition", `execution ${id} is not running (${record.status})`);
  }
}

function executionTimings(sandbox: SandboxCreateTimings | undefined, commandMs: number, totalMs: number): ExecutionTimings {
  const round = (ms: number) => Math.round(ms * 10) / 10;
  return { rootfsPrepMs: sandbox?.rootfsPrepMs ?? 0, networkSetupMs: sandbox?.networkSetupMs ?? 0, readyMs: sandbox?.readyMs ?? 0, commandMs: round(commandMs), totalMs: round(totalMs) };
}

function validateCommand(input: ExecutionInput): void {
  if (input.command.length === 0 || input.command[0] === "") throw new CleanroomError("invalid_argument", "no command given; put it after `--`, e.g. `cleanroom exec -- echo hello`");
  if (input.shell && input.command.length !== 1) throw new CleanroomError("invalid_argument", "a shell command is one string");
  const bytes = input.command.reduce((sum, arg) => sum + Buffer.byteLength(arg), 0);
  if (input.command.length > MAX_COMMAND_ARGS || bytes > MAX_COMMAND_BYTES) throw new CleanroomError("invalid_argument", `the command is too long (${input.command.length} arguments, ${bytes} bytes)`);
  for (const entry of input.env ?? []) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*=/.test(entry)) throw new CleanroomError("invalid_argument", `environment entry "${entry.slice(0, 60)}" is not KEY=VALUE`);
  }
}

/** The image's environment with the request's entries layered on top (later KEY wins). */
export function mergeEnv(base: readonly string[], overrides: readonly string[]): string[] {
  const byKey = new Map<string, string>();
  for (const entry of [...base, ...overrides]) {
    const eq = entry.indexOf("=");
    if (eq > 0) byKey.set(entry.slice(0, eq), entry);
  }
  return [...byKey.values()];
}

function signalName(signalNumber: number): NodeJS.Signals {
  if (signalNumber === 0) return "SIGTERM";
  const entry = Object.entries(osConstants.signals).find(([, number]) => number === signalNumber);
  if (!entry) throw new CleanroomError("invalid_argument", `unknown signal number ${signalNumber}`);
  return entry[0] as NodeJS.Signals;
}
