import type { AgentClient, ExecRequest } from "../agent-protocol/index.ts";

export interface GuestCommandResult {
  exitCode: number;
  /** the first `maxStdoutBytes` of stdout */
  stdout: string;
  /** the last `maxStderrBytes` of stderr, printable characters only */
  stderrTail: string;
}

/**
 * Runs one command in the sandbox to completion for the daemon's own work (repository bootstrap, blocks), killing it
 * after `timeoutMs`. Output is sandbox-controlled: kept bounded and made printable before it reaches a message.
 */
export async function runGuestCommand(agent: AgentClient, request: ExecRequest, opts: { timeoutMs: number; maxStdoutBytes?: number; maxStderrBytes?: number }): Promise<GuestCommandResult> {
  const maxStdout = opts.maxStdoutBytes ?? 0;
  const maxStderr = opts.maxStderrBytes ?? 16 * 1024;
  const process = agent.exec(request);
  let stdout = "";
  let stderr = "";
  process.stdout.on("data", (chunk: Buffer) => {
    if (stdout.length < maxStdout) stdout += chunk.toString("utf8").slice(0, maxStdout - stdout.length);
  });
  process.stderr.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString("utf8")).slice(-maxStderr);
  });
  const timer = setTimeout(() => process.signal("SIGKILL"), opts.timeoutMs);
  try {
    const exit = await process.exit;
    return { exitCode: exit.exitCode, stdout, stderrTail: printable(stderr) };
  } finally {
    clearTimeout(timer);
  }
}

/** The last lines of a command's stderr for an error message, or its exit status when it printed nothing. */
export function failureSummary(result: GuestCommandResult, lines = 6): string {
  return result.stderrTail.trim().split("\n").slice(-lines).join("; ") || `exit status ${result.exitCode}`;
}

function printable(text: string): string {
  return text.replace(/[^\x20-\x7e\n]/g, "?");
}
