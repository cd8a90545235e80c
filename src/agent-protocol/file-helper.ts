import { Writable, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { CleanroomError } from "../errors/index.ts";
import { protocolError } from "./control-messages.ts";
import { helperFailure } from "./file-entry.ts";
import type { AgentClient, AgentProcess } from "./types.ts";

/** The stderr bytes an error is read from; the helper's one error line is far shorter. */
const STDERR_KEEP_BYTES = 4 * 1024;
/** A helper that writes more than this to stderr is not our helper any more: it is killed. */
const STDERR_MAX_BYTES = 64 * 1024;
/** How long a terminated helper may take to clean up before it is killed. */
const TERMINATE_GRACE_MS = 2000;

/** One run of `cleanroom-agent file <op> <request>` in a sandbox. */
export class FileHelperRun {
  readonly op: string;
  readonly stdout: Readable;
  /** null unless started with stdin */
  readonly stdin: Writable | null;
  /** resolves when the helper exited 0; rejects with why it was killed, or with its mapped error */
  readonly succeeded: Promise<void>;
  readonly #process: AgentProcess;
  #killReason: Error | undefined;

  constructor(agent: AgentClient, agentPath: string, op: string, request: Record<string, unknown>, opts: { stdin: boolean; /** another helper mode's arguments (dial) */ argv?: string[] }) {
    this.op = op;
    this.#process = agent.exec({ argv: [agentPath, ...(opts.argv ?? ["file", op, JSON.stringify(request)])], stdin: opts.stdin });
    this.stdout = this.#process.stdout;
    this.stdin = this.#process.stdin;
    const stderr = collectBounded(this.#process.stderr, STDERR_KEEP_BYTES, STDERR_MAX_BYTES, () =>
      this.kill(protocolError(`the file helper wrote more than ${STDERR_MAX_BYTES} bytes to stderr`)),
    );
    this.succeeded = Promise.all([this.#process.exit, stderr]).then(
      ([exit, stderrHead]) => {
        if (this.#killReason) throw this.#killReason;
        if (exit.exitCode !== 0) throw helperFailure(op, exit, stderrHead);
      },
      (err: unknown) => {
        throw this.#killReason ?? err;
      },
    );
    this.succeeded.catch(() => undefined); // observed by whoever settles the run; never unhandled
  }

  /** SIGKILLs the helper; reason (the first one given) is what the run then fails with. */
  kill(reason: Error): void {
    this.#killReason ??= reason;
    this.#process.signal("SIGKILL");
  }

  /**
   * Stops the helper because its input failed: SIGTERM first, so that write removes its temp file, then
   * SIGKILL if it has not exited within TERMINATE_GRACE_MS.
   */
  terminate(reason: Error): void {
    this.#killReason ??= reason;
    this.#process.signal("SIGTERM");
    const timer = setTimeout(() => this.#process.signal("SIGKILL"), TERMINATE_GRACE_MS);
    this.#process.exit.finally(() => clearTimeout(timer)).catch(() => undefined);
  }

  /** Kills the helper for a failure found in its output, unless that output has already ended. */
  killIfRunning(stream: Readable, reason: Error): void {
    if (!stream.readableEnded) this.kill(reason);
  }
}

/**
 * The result of a run: the helper's own failure (or why it was killed) comes first, because a failed
 * helper's output is expectedly incomplete; otherwise the parse of its output.
 */
export async function settleRun<T>(run: FileHelperRun, output: Promise<T>): Promise<T> {
  const [out, status] = await Promise.allSettled([output, run.succeeded]);
  if (status.status === "rejected") throw status.reason;
  if (out.status === "rejected") throw out.reason;
  return out.value;
}

/**
 * Reads a stream to its end, keeping the first keepBytes. Past maxBytes, onOverflow runs once and the
 * stream is destroyed; the promise still resolves with what was kept.
 */
export function collectBounded(stream: Readable, keepBytes: number, maxBytes: number, onOverflow: () => void): Promise<Buffer> {
  return new Promise((resolve) => {
    const kept: Buffer[] = [];
    let keptBytes = 0;
    let total = 0;
    const done = () => resolve(Buffer.concat(kept));
    stream.on("data", (chunk: Buffer) => {
      total += chunk.length;
      if (keptBytes < keepBytes) {
        const part = chunk.subarray(0, keepBytes - keptBytes);
        kept.push(part);
        keptBytes += part.length;
      }
      if (total > maxBytes) {
        onOverflow();
        stream.destroy();
      }
    });
    stream.once("end", done);
    stream.once("close", done);
    stream.once("error", done);
  });
}

/** Collects one result line of at most maxBytes; more output kills the helper. */
export function collectResult(run: FileHelperRun, maxBytes: number): Promise<Buffer> {
  return collectBounded(run.stdout, maxBytes, maxBytes, () =>
    run.kill(protocolError(`the file helper's ${run.op} output exceeds ${maxBytes} bytes`)),
  );
}

/** Splits a stream into "\n"-terminated lines of at most maxLineBytes (without the newline). */
export async function* splitLines(stream: Readable, maxLineBytes: number): AsyncGenerator<Buffer> {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    let start = 0;
    for (let nl = chunk.indexOf(10); nl >= 0; nl = chunk.indexOf(10, start)) {
      pendingBytes += nl - start;
      if (pendingBytes > maxLineBytes) throw protocolError(`a line of the file helper's output exceeds ${maxLineBytes} bytes`);
      pending.push(chunk.subarray(start, nl));
      yield Buffer.concat(pending);
      pending = [];
      pendingBytes = 0;
      start = nl + 1;
    }
    pendingBytes += chunk.length - start;
    if (pendingBytes > maxLineBytes) throw protocolError(`a line of the file helper's output exceeds ${maxLineBytes} bytes`);
    if (start < chunk.length) pending.push(chunk.subarray(start));
  }
  if (pendingBytes > 0) throw protocolError("the file helper's output ends inside a line");
}

/**
 * Pipes input into the helper's stdin with backpressure. When the input fails, the helper is terminated
 * and its stdin is never closed, so that it cannot take a cut-short input for a complete one. When the
 * helper ends first (it failed, or needs no more), the rest of the input is not read.
 */
export async function feedStdin(run: FileHelperRun, input: Readable): Promise<void> {
  const stdin = run.stdin;
  if (!stdin) throw new CleanroomError("internal", `sandbox file ${run.op}: the helper has no stdin`);
  const helperEnded = new AbortController();
  void run.succeeded.then(() => helperEnded.abort(), () => helperEnded.abort());
  try {
    await pipeline(input, new KillingStdin(stdin, (reason) => run.terminate(reason)), { signal: helperEnded.signal });
  } catch (err) {
    if (helperEnded.signal.aborted) return; // the helper's own result decides
    const reason = err instanceof Error ? err : new Error(String(err));
    run.terminate(reason);
    throw reason;
  }
}

/** The helper's stdin as a pipeline target: ends it on success, stops the helper on any other end. */
class KillingStdin extends Writable {
  readonly #target: Writable;
  readonly #stop: (reason: Error) => void;

  constructor(target: Writable, stop: (reason: Error) => void) {
    super({ highWaterMark: 64 * 1024 });
    this.#target = target;
    this.#stop = stop;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.#target.write(chunk, (err) => callback(err));
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.#target.end(() => callback());
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.writableFinished) this.#stop(err ?? new CleanroomError("internal", "the input to a sandbox file operation ended early"));
    callback(err);
  }
}
