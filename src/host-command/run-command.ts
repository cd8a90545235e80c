import { spawn } from "node:child_process";

export interface RunOptions {
  timeoutMs: number;
  /** stdout/stderr beyond this are dropped (the tail of stderr is kept for errors) */
  maxOutputBytes?: number;
  cwd?: string;
  /** default: only PATH and LC_ALL=C, so no daemon secret reaches a host tool by accident */
  env?: NodeJS.ProcessEnv;
  /** called with each complete stderr/stdout line, e.g. to report progress */
  onLine?: (line: string) => void;
  /** written to the command's stdin, which is then closed (default: stdin is /dev/null) */
  input?: string;
}

export interface RunResult {
  stdout: string;
  stderr: string;
}

export interface CommandResult extends RunResult {
  /** exit code; null when it never started or was killed */
  code: number | null;
  /** why it did not exit normally: could not start (ENOENT…), timed out, killed */
  error?: string;
}

const MINIMAL_ENV: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin", LC_ALL: "C" };

/** Error of a failed command, carrying its full (bounded) stderr. */
export class CommandError extends Error {
  readonly stderr: string;
  readonly exitCode: number | null;
  constructor(message: string, stderr: string, exitCode: number | null) {
    super(message);
    this.name = "CommandError";
    this.stderr = stderr;
    this.exitCode = exitCode;
  }
}

/** Runs `cmd args` (never through a shell) with a timeout and bounded output; rejects with CommandError on failure. */
export async function runCommand(cmd: string, args: readonly string[], opts: RunOptions): Promise<RunResult> {
  const result = await tryCommand(cmd, args, opts);
  if (result.code === 0) return { stdout: result.stdout, stderr: result.stderr };
  throw new CommandError(describeFailure(cmd, args, result), result.stderr, result.code);
}

/** One line describing a failed command, with its (bounded) stderr, for error messages. */
export function describeFailure(cmd: string, args: readonly string[], result: CommandResult): string {
  const status = result.error ?? `exited with ${result.code ?? "?"}`;
  const stderr = result.stderr.trim();
  return `${cmd} ${args.join(" ")} ${status}${stderr ? `: ${stderr}` : ""}`;
}

/** Like runCommand, but never rejects: the caller decides what a failure means. */
export function tryCommand(cmd: string, args: readonly string[], opts: RunOptions): Promise<CommandResult> {
  const max = opts.maxOutputBytes ?? 1 << 20;
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? MINIMAL_ENV, stdio: [opts.input === undefined ? "ignore" : "pipe", "pipe", "pipe"] });
    if (opts.input !== undefined) {
      child.stdin?.on("error", () => undefined); // a command that exits without reading its input
      child.stdin?.end(opts.input);
    }
    const out = new BoundedText(max, false);
    const err = new BoundedText(max, true);
    const lines = opts.onLine ? new LineSplitter(opts.onLine) : undefined;
    child.stdout!.on("data", (c: Buffer) => { out.push(c); lines?.push(c); });
    child.stderr!.on("data", (c: Buffer) => { err.push(c); lines?.push(c); });
    let timedOut = false;
    const timer = setTimeout(() => { timedOut = true; child.kill("SIGKILL"); }, opts.timeoutMs);
    let startError: string | undefined;
    child.on("error", (e: NodeJS.ErrnoException) => {
      startError = `${e.code ?? "error"}: ${e.message}`;
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      lines?.flush();
      const result: CommandResult = { code: startError ? null : code, stdout: out.text(), stderr: err.text() };
      const why = startError ?? (timedOut ? `timed out after ${opts.timeoutMs} ms` : signal ? `killed by ${signal}` : undefined);
      resolve(why ? { ...result, error: why } : result);
    });
  });
}

/** Keeps the first (or last, when `keepTail`) `max` bytes of a stream. */
class BoundedText {
  private chunks: Buffer[] = [];
  private size = 0;
  private readonly max: number;
  private readonly keepTail: boolean;
  constructor(max: number, keepTail: boolean) {
    this.max = max;
    this.keepTail = keepTail;
  }
  push(c: Buffer): void {
    if (!this.keepTail && this.size >= this.max) return;
    this.chunks.push(c);
    this.size += c.length;
    while (this.keepTail && this.size > this.max && this.chunks.length > 1) this.size -= this.chunks.shift()!.length;
  }
  text(): string {
    const all = Buffer.concat(this.chunks);
    return (this.keepTail ? all.subarray(Math.max(0, all.length - this.max)) : all.subarray(0, this.max)).toString("utf8");
  }
}

class LineSplitter {
  private rest = "";
  private readonly onLine: (line: string) => void;
  constructor(onLine: (line: string) => void) {
    this.onLine = onLine;
  }
  push(c: Buffer): void {
    const parts = (this.rest + c.toString("utf8")).split("\n");
    this.rest = (parts.pop() ?? "").slice(-4096);
    for (const p of parts) if (p.trim()) this.onLine(p.slice(0, 4096));
  }
  flush(): void {
    if (this.rest.trim()) this.onLine(this.rest);
    this.rest = "";
  }
}
