import type {
  ExecutionExitJson, ExecutionJson, ExecutionService, HostService, ImageService, SandboxJson, SandboxService, SnapshotService,
} from "../api/index.ts";
import type { SandboxPortConnection } from "./port-dial.ts";
import { readFileSync } from "node:fs";
import { defaultSocketPath } from "../config/index.ts";
import { CleanroomError } from "../errors/index.ts";
import { JsonTransport, parseEndpoint, type CallOptions, type Endpoint, type JsonClient, type StreamFormat } from "./connect-json.ts";

export interface CleanroomOptions {
  /** `unix:///path`, `http://127.0.0.1:port` or `https://host:port`; default `CLEANROOM_HOST`, else the default socket */
  host?: string;
  /** PEM file of the CA that vouches for an https daemon; default `CLEANROOM_TLS_CA`, else the system's CAs */
  tlsCa?: string;
  /** bearer token for a daemon that requires auth; default the contents of `CLEANROOM_AUTH_TOKEN_FILE`, else
   * `CLEANROOM_AUTH_TOKEN`. Never sent over plain http beyond loopback. */
  token?: string;
  /** extra headers sent on every call, e.g. `{ traceparent: newTraceContext().traceparent }` */
  headers?: Record<string, string>;
}

/** The token the environment offers: the file CLEANROOM_AUTH_TOKEN_FILE names, else CLEANROOM_AUTH_TOKEN. */
function tokenFromEnv(env: NodeJS.ProcessEnv): string | undefined {
  if (env.CLEANROOM_AUTH_TOKEN_FILE) return readTokenFile(env.CLEANROOM_AUTH_TOKEN_FILE);
  return env.CLEANROOM_AUTH_TOKEN || undefined;
}

/** A token file's contents without surrounding whitespace; an empty or unreadable file is an error, not "no token". */
export function readTokenFile(path: string): string {
  let token: string;
  try {
    token = readFileSync(path, "utf8").trim();
  } catch (err) {
    throw new CleanroomError("auth_missing", `cannot read the auth token file ${path}: ${(err as Error).message}`);
  }
  if (!token) throw new CleanroomError("auth_missing", `the auth token file ${path} is empty`);
  return token;
}

function readCaFile(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new CleanroomError("invalid_argument", `cannot read the TLS CA file ${path}: ${(err as Error).message}`);
  }
}

/** A repository to check out in a new sandbox, at an exact commit. */
export interface RepositoryCheckoutOptions {
  /** https URL of the repository */
  remoteUrl: string;
  /** sha (full or abbreviated), tag, branch or "latest" (default) */
  commit?: string;
  /** for a sha: the branch whose remote-tracking ref the checkout carries */
  branch?: string;
}

export interface CreateSandboxOptions {
  /** a compiled policy (canonical JSON) and its hash, e.g. from `loadRepositoryPolicy`; with `repository` and no
   * policy, the daemon loads cleanroom.yaml from the checked-out commit */
  policy?: { json: string; hash: string };
  /** check this repository out at `repository.path` (default /workspace) before the sandbox is ready */
  repository?: RepositoryCheckoutOptions;
  image?: string;
  backend?: string;
  launchSeconds?: number;
  dangerouslyAllowAll?: boolean;
  labels?: Record<string, string>;
  resources?: { vcpus?: number; memoryMiB?: number; pidsLimit?: number };
  /** a snapshot id: the sandbox starts from its filesystem (and its policy, unless `policy` is given) */
  fromSnapshot?: string;
  /** called as the daemon works through the creation (image, checkout, each block's cache lookup and run) */
  onProgress?: (progress: CreateProgressEvent) => void;
}

/** One step of a sandbox's creation, as CreateSandboxStream reports it. */
export interface CreateProgressEvent {
  /** the phase without its prefix: RESOLVE_IMAGE, PULL_IMAGE, PROVISION, BOOTSTRAP_REPOSITORY, LOOKUP_CACHE, … */
  phase: string;
  message: string;
  /** a dependency or service block's cache outcome */
  block?: { stage: string; name: string; key: string; result: string; reason: string; durationMs: number; outputs: string[] };
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
  /** do not run the policy's `sandbox.run.before` first */
  skipRunBefore?: boolean;
}

/** Final state of an execution, as `ExecutionStatus` names without their prefix. */
export type ExecutionOutcome = "SUCCEEDED" | "FAILED" | "CANCELED" | "TIMED_OUT";

export interface ExecResult {
  executionId: string;
  exitCode: number;
  signal: string;
  status: ExecutionOutcome;
  statusReason: string;
  /** what the sandbox's network policy blocked while the command ran */
  networkWarnings: string[];
  stdout: Buffer;
  stderr: Buffer;
}

export type OutputEvent = { stream: "stdout" | "stderr"; data: Buffer };
export interface ExitEvent {
  status: ExecutionOutcome;
  exitCode: number;
  signal: string;
  statusReason: string;
  /** what the sandbox's network policy blocked while the command ran */
  networkWarnings: string[];
}

/** Default endpoint: the socket the daemon listens on by default (root's, else the user's runtime dir). */
export function defaultHost(env: NodeJS.ProcessEnv = process.env): string {
  return `unix://${defaultSocketPath(env)}`;
}

/** Drops an enum's type prefix: "SANDBOX_STATUS_READY" → "READY". */
export function enumName(value: string | undefined, prefix: string): string {
  return value ? value.replace(prefix, "") : "UNSPECIFIED";
}

/** A client of one Cleanroom daemon. Errors are CleanroomErrors carrying the daemon's reason code. */
export class Cleanroom {
  readonly host: string;
  readonly sandboxes: JsonClient<typeof SandboxService>;
  readonly executions: JsonClient<typeof ExecutionService>;
  readonly images: JsonClient<typeof ImageService>;
  readonly hostService: JsonClient<typeof HostService>;
  readonly snapshots: JsonClient<typeof SnapshotService>;
  readonly #transport: JsonTransport;

  /** where and how this client reaches the daemon (TLS CA, token) */
  get endpoint(): Endpoint {
    return this.#transport.endpoint;
  }

  constructor(opts: CleanroomOptions = {}) {
    this.host = opts.host || process.env.CLEANROOM_HOST || defaultHost();
    const caFile = opts.tlsCa || process.env.CLEANROOM_TLS_CA;
    const token = opts.token || tokenFromEnv(process.env);
    this.#transport = new JsonTransport(parseEndpoint(this.host, { ...(caFile ? { ca: readCaFile(caFile) } : {}), ...(token ? { token } : {}), ...(opts.headers ? { headers: opts.headers } : {}) }));
    this.sandboxes = this.#transport.client<typeof SandboxService>("cleanroom.v1.SandboxService", ["createSandboxStream", "streamSandboxEvents", "archiveSandboxPaths", "downloadSandboxFile"]);
    this.executions = this.#transport.client<typeof ExecutionService>("cleanroom.v1.ExecutionService", ["streamExecution"]);
    this.images = this.#transport.client<typeof ImageService>("cleanroom.v1.ImageService", ["pullImage", "importImage", "warmup"]);
    this.hostService = this.#transport.client<typeof HostService>("cleanroom.v1.HostService", []);
    this.snapshots = this.#transport.client<typeof SnapshotService>("cleanroom.v1.SnapshotService", []);
  }

  async createSandbox(opts: CreateSandboxOptions = {}): Promise<SandboxHandle> {
    const request = {
      imageRef: opts.image ?? "",
      backend: opts.backend ?? "",
      launchSeconds: opts.launchSeconds ?? 0,
      dangerouslyAllowAll: opts.dangerouslyAllowAll ?? false,
      labels: opts.labels ?? {},
      resources: { vcpus: opts.resources?.vcpus ?? 0, memoryMib: opts.resources?.memoryMiB ?? 0, pidsLimit: opts.resources?.pidsLimit ?? 0 },
      ...(opts.policy ? { compiledPolicyJson: opts.policy.json, policyHash: opts.policy.hash } : {}),
      ...(opts.repository ? { repositoryCheckout: { remoteUrl: opts.repository.remoteUrl, commit: opts.repository.commit ?? "latest", branch: opts.repository.branch ?? "" } } : {}),
      ...(opts.fromSnapshot ? { fromSnapshotId: opts.fromSnapshot } : {}),
    };
    if (!opts.onProgress) return new SandboxHandle(this, (await this.sandboxes.createSandbox(request)).sandbox ?? {});
    for await (const update of this.sandboxes.createSandboxStream(request)) {
      if (update.sandbox) return new SandboxHandle(this, update.sandbox);
      const block = update.block;
      opts.onProgress({
        phase: enumName(update.phase, "CREATE_PHASE_"),
        message: update.message ?? "",
        ...(block ? { block: { stage: block.stage ?? "", name: block.name ?? "", key: block.key ?? "", result: block.result ?? "", reason: block.reason ?? "", durationMs: Number(block.durationMs ?? 0), outputs: block.outputs ?? [] } } : {}),
      });
    }
    throw new CleanroomError("internal", "the daemon ended CreateSandboxStream without the sandbox");
  }

  /** A handle on an existing sandbox (no round trip). */
  sandbox(id: string): SandboxHandle {
    return new SandboxHandle(this, { sandboxId: id });
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

  /** A client-streaming SandboxService call (uploads): `messages` go as JSON, the reply comes back as JSON. */
  sandboxClientStream(method: "UploadSandboxFile" | "ExtractSandboxArchive", messages: AsyncIterable<unknown>, opts: CallOptions = {}): Promise<unknown> {
    return this.#transport.clientStream(`/cleanroom.v1.SandboxService/${method}`, messages, opts);
  }

  /** A server-streaming SandboxService call (downloads) whose request is already encoded in `format`. */
  sandboxServerStreamEncoded<Reply>(method: "DownloadSandboxFile" | "ArchiveSandboxPaths", request: Buffer, format: StreamFormat<Reply>, opts: CallOptions = {}): AsyncGenerator<Reply> {
    return this.#transport.serverStreamEncoded(`/cleanroom.v1.SandboxService/${method}`, request, format, opts);
  }

  /** A client-streaming SandboxService call (uploads) whose messages are already encoded in `format`. */
  sandboxClientStreamEncoded<Reply>(method: "UploadSandboxFile" | "ExtractSandboxArchive", messages: AsyncIterable<Buffer>, format: StreamFormat<Reply>, opts: CallOptions = {}): Promise<Reply> {
    return this.#transport.clientStreamEncoded(`/cleanroom.v1.SandboxService/${method}`, messages, format, opts);
  }

  /** Closes idle connections to the daemon. */
  close(): void {
    this.#transport.close();
  }
}

/** A sandbox on the daemon. */
export class SandboxHandle {
  readonly #client: Cleanroom;
  readonly info: SandboxJson;

  constructor(client: Cleanroom, info: SandboxJson) {
    this.#client = client;
    this.info = info;
  }

  get id(): string {
    return this.info.sandboxId ?? "";
  }

  /** Starts a command; its output streams from `execution.events()`. */
  async start(command: string[], opts: StartOptions = {}): Promise<ExecutionHandle> {
    const res = await this.#client.executions.createExecution({
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
      skipRunBefore: opts.skipRunBefore ?? false,
    });
    return new ExecutionHandle(this.#client, res.execution ?? {});
  }

  /**
   * A TCP connection to 127.0.0.1:`port` inside the sandbox (a suspended sandbox is woken): a Duplex that errors
   * with a CleanroomError (failed_precondition when nothing listens there). It answers the net.Socket calls
   * node's http.Agent makes, so it can serve as an HTTP client's pooled connection.
   */
  async dialPort(port: number): Promise<SandboxPortConnection> {
    const { SandboxPortConnection } = await import("./port-dial.ts");
    return new SandboxPortConnection(this.#client.endpoint, this.id, port);
  }

  /** Runs a command to completion and collects its output. */
  async exec(command: string[], opts: StartOptions = {}): Promise<ExecResult> {
    const execution = await this.start(command, opts);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let exit: ExitEvent | undefined;
    for await (const event of execution.events()) {
      if ("stream" in event) (event.stream === "stdout" ? out : err).push(event.data);
      else exit = event;
    }
    return {
      executionId: execution.id,
      exitCode: exit?.exitCode ?? -1,
      signal: exit?.signal ?? "",
      status: exit?.status ?? "FAILED",
      statusReason: exit?.statusReason ?? "the output stream ended without an exit status",
      networkWarnings: exit?.networkWarnings ?? [],
      stdout: Buffer.concat(out),
      stderr: Buffer.concat(err),
    };
  }

  async terminate(opts: { wait?: boolean } = {}): Promise<void> {
    await this.#client.sandboxes.terminateSandbox({ sandboxId: this.id, async: opts.wait === false });
  }
}

/** A running (or finished) execution. */
export class ExecutionHandle {
  readonly #client: Cleanroom;
  readonly info: ExecutionJson;

  constructor(client: Cleanroom, info: ExecutionJson) {
    this.#client = client;
    this.info = info;
  }

  get id(): string {
    return this.info.executionId ?? "";
  }

  /** Output from the start (replayed), then live output, and last the exit event. */
  async *events(opts: { signal?: AbortSignal } = {}): AsyncGenerator<OutputEvent | ExitEvent> {
    for await (const message of this.#client.executions.streamExecution({ executionId: this.id, follow: true }, opts)) {
      if (message.stdout !== undefined) yield { stream: "stdout", data: Buffer.from(message.stdout, "base64") };
      else if (message.stderr !== undefined) yield { stream: "stderr", data: Buffer.from(message.stderr, "base64") };
      else if (message.exit) yield exitEvent(message.exit);
    }
  }

  writeStdin(data: Uint8Array): Promise<unknown> {
    return this.#client.executions.writeExecutionStdin({ executionId: this.id, data: Buffer.from(data).toString("base64") });
  }

  closeStdin(): Promise<unknown> {
    return this.#client.executions.closeExecutionStdin({ executionId: this.id });
  }

  /** Sends a signal (number; SIGTERM by default) to the workload. */
  cancel(signal = 15): Promise<unknown> {
    return this.#client.executions.cancelExecution({ executionId: this.id, signal });
  }

  resize(rows: number, cols: number): Promise<unknown> {
    return this.#client.executions.resizeExecutionTerminal({ executionId: this.id, terminalSize: { rows, cols } });
  }
}

function exitEvent(exit: ExecutionExitJson): ExitEvent {
  return {
    status: enumName(exit.status, "EXECUTION_STATUS_") as ExecutionOutcome,
    exitCode: exit.exitCode ?? 0,
    signal: exit.signal ?? "",
    statusReason: exit.statusReason ?? "",
    networkWarnings: exit.networkWarnings ?? [],
  };
}
