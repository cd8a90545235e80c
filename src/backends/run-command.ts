import { execFile } from "node:child_process";

export interface CommandResult {
  /** exit code; null when killed by a signal (e.g. the timeout) */
  code: number | null;
  stdout: string;
  stderr: string;
  /** set when the command could not be started (ENOENT…) or was killed */
  error?: string;
}

export interface RunOptions {
  timeoutMs: number;
  cwd?: string;
  input?: string;
  /** cap on each of stdout and stderr */
  maxOutputBytes?: number;
}

/** Runs `file args…` without a shell; never throws: the caller decides what a failure means. */
export function runCommand(file: string, args: readonly string[], opts: RunOptions): Promise<CommandResult> {
  return new Promise((resolve) => {
    const child = execFile(
      file,
      args,
      {
        timeout: opts.timeoutMs,
        killSignal: "SIGKILL",
        maxBuffer: opts.maxOutputBytes ?? 1024 * 1024,
        cwd: opts.cwd,
        encoding: "utf8",
        env: { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin", LC_ALL: "C" },
      },
      (err, stdout, stderr) => {
        if (!err) return resolve({ code: 0, stdout, stderr });
        const e = err as NodeJS.ErrnoException & { code?: number | string; killed?: boolean; signal?: string };
        const code = typeof e.code === "number" ? e.code : null;
        const why =
          typeof e.code === "string" ? `${e.code}: ${e.message}` : e.killed ? `killed (${e.signal ?? "timeout"}) after ${opts.timeoutMs} ms` : undefined;
        resolve({ code, stdout, stderr, ...(why !== undefined ? { error: why } : {}) });
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/** One line describing a failed command, with its full stderr, for error messages. */
export function describeFailure(file: string, args: readonly string[], r: CommandResult): string {
  const status = r.error ?? `exit ${r.code ?? "?"}`;
  const stderr = r.stderr.trim();
  return `${file} ${args.join(" ")}: ${status}${stderr ? `: ${stderr}` : ""}`;
}
