import type { AgentProcess, ExitStatus } from "../agent-protocol/index.ts";
import { CleanroomError, messageOf } from "../errors/index.ts";
import type { OutputLogWriter, OutputStream } from "./output-log.ts";
import type { ExecutionRecord } from "./records.ts";

/**
 * One running execution: pumps the agent's output into the durable log (the log's pace is the workload's
 * pace), forwards stdin, signals and resizes, and settles the record when the workload exits.
 */
export class LiveExecution {
  readonly record: ExecutionRecord;
  readonly #process: AgentProcess;
  readonly #log: OutputLogWriter;
  readonly #onChange: (record: ExecutionRecord) => void;
  #cancelRequested = false;
  #timedOut = false;
  #timeout: NodeJS.Timeout | undefined;
  readonly finished: Promise<ExecutionRecord>;

  constructor(record: ExecutionRecord, process: AgentProcess, log: OutputLogWriter, opts: { timeoutSeconds: number; onChange: (record: ExecutionRecord) => void }) {
    this.record = record;
    this.#process = process;
    this.#log = log;
    this.#onChange = opts.onChange;
    if (opts.timeoutSeconds > 0) {
      this.#timeout = setTimeout(() => {
        this.#timedOut = true;
        this.#process.signal("SIGKILL");
      }, opts.timeoutSeconds * 1000);
    }
    this.finished = this.#run();
  }

  get outputLog(): OutputLogWriter {
    return this.#log;
  }

  /** Sends `signal` to the workload; the execution ends CANCELED if it dies of it. */
  cancel(signal: NodeJS.Signals): void {
    this.#cancelRequested = true;
    this.#process.signal(signal);
  }

  async writeStdin(data: Uint8Array): Promise<void> {
    const stdin = this.#stdin();
    if (stdin.writableEnded) throw new CleanroomError("failed_precondition", `stdin of execution ${this.record.id} is already closed`);
    if (!stdin.write(data)) {
      await new Promise<void>((resolve, reject) => {
        const settle = (err?: Error) => {
          stdin.off("drain", settle);
          stdin.off("close", settle);
          stdin.off("error", settle);
          if (err) reject(err);
          else resolve();
        };
        stdin.on("drain", settle).on("close", settle).on("error", settle);
      });
    }
  }

  closeStdin(): void {
    const stdin = this.#stdin();
    if (!stdin.writableEnded) stdin.end();
  }

  resize(rows: number, cols: number): void {
    if (!this.record.tty) throw new CleanroomError("failed_precondition", `execution ${this.record.id} has no terminal to resize`);
    this.#process.resize(rows, cols);
  }

  #stdin() {
    const stdin = this.#process.stdin;
    if (!stdin) throw new CleanroomError("failed_precondition", `execution ${this.record.id} was not created with attach_stdin`);
    return stdin;
  }

  async #run(): Promise<ExecutionRecord> {
    const pumps = Promise.allSettled([
      this.#pump(this.#process.stdout, "stdout"),
      this.#pump(this.#process.stderr, "stderr"),
    ]);
    let exit: ExitStatus | undefined;
    let failure: string | undefined;
    try {
      exit = await this.#process.exit;
    } catch (err) {
      failure = messageOf(err);
    }
    const pumpResults = await pumps;
    clearTimeout(this.#timeout);
    for (const result of pumpResults) {
      if (result.status === "rejected" && !failure) failure = `output could not be stored: ${messageOf(result.reason)}`;
    }
    await this.#log.close().catch(() => undefined);
    this.#process.stdin?.destroy();
    this.#settle(exit, failure);
    return this.record;
  }

  async #pump(stream: NodeJS.ReadableStream, name: OutputStream): Promise<void> {
    for await (const chunk of stream) {
      const bytes = chunk as Buffer;
      await this.#log.append(name, bytes);
      if (name === "stdout") this.record.stdoutBytes += bytes.byteLength;
      else this.record.stderrBytes += bytes.byteLength;
    }
  }

  #settle(exit: ExitStatus | undefined, failure: string | undefined): void {
    const record = this.record;
    record.finishedAt = new Date().toISOString();
    if (exit) {
      record.exitCode = exit.exitCode;
      record.signal = exit.signal ?? "";
    }
    if (this.#timedOut) {
      record.status = "TIMED_OUT";
      record.statusReason = "the execution ran past its timeout and was killed";
    } else if (!exit) {
      record.status = "FAILED";
      record.statusReason = failure ?? "the execution ended without an exit status";
    } else if (this.#cancelRequested && exit.signal) {
      record.status = "CANCELED";
      record.statusReason = `canceled with ${exit.signal}`;
    } else if (failure) {
      record.status = "FAILED";
      record.statusReason = failure;
    } else {
      record.status = exit.exitCode === 0 ? "SUCCEEDED" : "FAILED";
      record.statusReason = exit.signal ? `killed by ${exit.signal}` : `exited with code ${exit.exitCode}`;
    }
    this.#onChange(record);
  }
}
