import { createClient, type Client } from "@connectrpc/connect";
import { ExecutionService, ExecutionStatus, HostService, ImageService, SandboxService, type Execution, type Sandbox } from "../api/index.ts";
import { defaultHost, createTransport } from "./transport.ts";
import { fromConnectError } from "./errors.ts";

export interface CleanroomOptions {
  /** `unix:///path` or `http(s)://host:port`; default `CLEANROOM_HOST`, else the default socket */
  host?: string;
}

export interface CreateSandboxOptions {
  image?: string;
  backend?: string;
  launchSeconds?: number;
  dangerouslyAllowAll?: boolean;
  labels?: Record<string, string>;
  resources?: { vcpus?: number; memoryMiB?: number; pidsLimit?: number };
}

export interface StartOptions {
  env?: string[];
  cwd?: string;
  user?: string;
  tty?: { rows: number; cols: number };
  /** send stdin with `writeStdin`/`closeStdin`; otherwise the workload reads EOF */
  stdin?: boolean;
  shell?: boolean;
  timeoutSeconds?: number;
}

export interface ExecResult {
  executionId: string;
  exitCode: number;
  signal: string;
  status: keyof typeof ExecutionStatus;
  stdout: Buffer;
  stderr: Buffer;
}

export type OutputEvent = { stream: "stdout" | "stderr"; data: Uint8Array };
export interface ExitEvent { status: ExecutionStatus; exitCode: number; signal: string; statusReason: string }

/** A client of one Cleanroom daemon. */
export class Cleanroom {
  readonly host: string;
  readonly sandboxes: Client<typeof SandboxService>;
  readonly executions: Client<typeof ExecutionService>;
  readonly images: Client<typeof ImageService>;
  readonly hostService: Client<typeof HostService>;

  constructor(opts: CleanroomOptions = {}) {
    this.host = opts.host || process.env.CLEANROOM_HOST || defaultHost();
    const transport = createTransport(this.host);
    this.sandboxes = createClient(SandboxService, transport);
    this.executions = createClient(ExecutionService, transport);
    this.images = createClient(ImageService, transport);
    this.hostService = createClient(HostService, transport);
  }

  /** Runs `call`, turning daemon errors into CleanroomErrors with reason codes. */
  async call<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (err) {
      throw fromConnectError(err, this.host);
    }
  }

  /** Iterates a server stream, turning daemon errors into CleanroomErrors. */
  async *stream<T>(open: () => AsyncIterable<T>): AsyncGenerator<T> {
    try {
      yield* open();
    } catch (err) {
      throw fromConnectError(err, this.host);
    }
  }

  async createSandbox(opts: CreateSandboxOptions = {}): Promise<SandboxHandle> {
    const res = await this.call(() =>
      this.sandboxes.createSandbox({
        imageRef: opts.image ?? "",
        backend: opts.backend ?? "",
        launchSeconds: opts.launchSeconds ?? 0,
        dangerouslyAllowAll: opts.dangerouslyAllowAll ?? false,
        labels: opts.labels ?? {},
        resources: { vcpus: opts.resources?.vcpus ?? 0, memoryMib: opts.resources?.memoryMiB ?? 0, pidsLimit: opts.resources?.pidsLimit ?? 0 },
      }),
    );
    return new SandboxHandle(this, res.sandbox!);
  }

  /** A handle on an existing sandbox (no round trip). */
  sandbox(id: string): SandboxHandle {
    return new SandboxHandle(this, { sandboxId: id } as Sandbox);
  }

  /** Creates a sandbox, runs one command to completion, and terminates the sandbox. */
  async exec(command: string[], opts: CreateSandboxOptions & StartOptions = {}): Promise<ExecResult> {
    const sandbox = await this.createSandbox(opts);
    try {
      return await sandbox.exec(command, opts);
    } finally {
      await sandbox.terminate({ wait: false }).catch(() => undefined);
    }
  }
}

/** A sandbox on the daemon. */
export class SandboxHandle {
  readonly #client: Cleanroom;
  readonly info: Sandbox;

  constructor(client: Cleanroom, info: Sandbox) {
    this.#client = client;
    this.info = info;
  }

  get id(): string {
    return this.info.sandboxId;
  }

  /** Starts a command; output is streamed from `execution.events()`. */
  async start(command: string[], opts: StartOptions = {}): Promise<ExecutionHandle> {
    const c = this.#client;
    const res = await c.call(() =>
      c.executions.createExecution({
        sandboxId: this.id,
        command,
        shell: opts.shell ?? false,
        env: opts.env ?? [],
        cwd: opts.cwd ?? "",
        user: opts.user ?? "",
        tty: Boolean(opts.tty),
        ...(opts.tty ? { terminalSize: opts.tty } : {}),
        attachStdin: opts.stdin ?? false,
        timeoutSeconds: opts.timeoutSeconds ?? 0,
      }),
    );
    return new ExecutionHandle(c, res.execution!);
  }

  /** Runs a command to completion and collects its output. */
  async exec(command: string[], opts: StartOptions = {}): Promise<ExecResult> {
    const execution = await this.start(command, opts);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let exit: ExitEvent | undefined;
    for await (const event of execution.events()) {
      if ("stream" in event) (event.stream === "stdout" ? out : err).push(Buffer.from(event.data));
      else exit = event;
    }
    return {
      executionId: execution.id,
      exitCode: exit?.exitCode ?? -1,
      signal: exit?.signal ?? "",
      status: ExecutionStatus[exit?.status ?? ExecutionStatus.UNSPECIFIED] as keyof typeof ExecutionStatus,
      stdout: Buffer.concat(out),
      stderr: Buffer.concat(err),
    };
  }

  async terminate(opts: { wait?: boolean } = {}): Promise<void> {
    const c = this.#client;
    await c.call(() => c.sandboxes.terminateSandbox({ sandboxId: this.id, async: opts.wait === false }));
  }
}

/** A running (or finished) execution. */
export class ExecutionHandle {
  readonly #client: Cleanroom;
  readonly info: Execution;

  constructor(client: Cleanroom, info: Execution) {
    this.#client = client;
    this.info = info;
  }

  get id(): string {
    return this.info.executionId;
  }

  /** Output from the start (replayed), live output, and last the exit event. */
  async *events(opts: { signal?: AbortSignal } = {}): AsyncGenerator<OutputEvent | ExitEvent> {
    const c = this.#client;
    const stream = c.stream(() => c.executions.streamExecution({ executionId: this.id, follow: true }, opts.signal ? { signal: opts.signal } : {}));
    for await (const message of stream) {
      const event = message.event;
      if (event.case === "stdout" || event.case === "stderr") yield { stream: event.case, data: event.value };
      else if (event.case === "exit") yield event.value;
    }
  }

  writeStdin(data: Uint8Array): Promise<unknown> {
    const c = this.#client;
    return c.call(() => c.executions.writeExecutionStdin({ executionId: this.id, data }));
  }

  closeStdin(): Promise<unknown> {
    const c = this.#client;
    return c.call(() => c.executions.closeExecutionStdin({ executionId: this.id }));
  }

  cancel(signal = 15): Promise<unknown> {
    const c = this.#client;
    return c.call(() => c.executions.cancelExecution({ executionId: this.id, signal }));
  }

  resize(rows: number, cols: number): Promise<unknown> {
    const c = this.#client;
    return c.call(() => c.executions.resizeExecutionTerminal({ executionId: this.id, terminalSize: { rows, cols } }));
  }
}
