import { timestampDate } from "@bufbuild/protobuf/wkt";
import { ExecutionStatus, type Execution } from "../../api/index.ts";
import { Cleanroom } from "../../sdk/index.ts";
import { age, printJson, printTable } from "../output.ts";

const TAIL_BYTES = 64 * 1024;

export async function listExecutions(flags: { host?: string; sandboxId?: string; all?: boolean; json?: boolean }): Promise<number> {
  const client = new Cleanroom({ ...(flags.host ? { host: flags.host } : {}) });
  const res = await client.call(() => client.executions.listExecutions({ sandboxId: flags.sandboxId ?? "", all: Boolean(flags.all) }));
  if (flags.json) {
    printJson(res.executions.map(executionJson));
    return 0;
  }
  printTable(
    ["EXECUTION ID", "SANDBOX ID", "STATUS", "EXIT", "COMMAND", "CREATED"],
    res.executions.map((e) => [
      e.executionId, e.sandboxId, ExecutionStatus[e.status], isFinished(e) ? String(e.exitCode) : "",
      e.command.join(" ").slice(0, 40), age(e.createdAt && timestampDate(e.createdAt)),
    ]),
  );
  return 0;
}

export async function inspectExecution(id: string, flags: { host?: string; json?: boolean }): Promise<number> {
  const client = new Cleanroom({ ...(flags.host ? { host: flags.host } : {}) });
  const res = await client.call(() => client.executions.inspectExecution({ executionId: id, outputBytes: TAIL_BYTES }));
  const info = { ...executionJson(res.execution!), artifacts_dir: res.artifactsDir };
  const stdout = Buffer.from(res.stdoutTail).toString("utf8");
  const stderr = Buffer.from(res.stderrTail).toString("utf8");
  if (flags.json) {
    printJson({ ...info, stdout, stderr });
    return 0;
  }
  for (const [key, value] of Object.entries(info)) process.stdout.write(`${key.padEnd(16)}${Array.isArray(value) ? value.join(" ") : String(value)}\n`);
  if (stdout) process.stdout.write(`--- stdout (last ${TAIL_BYTES / 1024} KiB) ---\n${stdout}${stdout.endsWith("\n") ? "" : "\n"}`);
  if (stderr) process.stdout.write(`--- stderr (last ${TAIL_BYTES / 1024} KiB) ---\n${stderr}${stderr.endsWith("\n") ? "" : "\n"}`);
  return 0;
}

function isFinished(e: Execution): boolean {
  return e.status >= ExecutionStatus.SUCCEEDED;
}

function executionJson(e: Execution) {
  const iso = (t: Execution["createdAt"]) => (t ? timestampDate(t).toISOString() : "");
  const started = e.startedAt ? timestampDate(e.startedAt).getTime() : undefined;
  const finished = e.finishedAt ? timestampDate(e.finishedAt).getTime() : undefined;
  return {
    execution_id: e.executionId,
    sandbox_id: e.sandboxId,
    status: ExecutionStatus[e.status],
    status_reason: e.statusReason,
    command: e.command,
    tty: e.tty,
    exit_code: isFinished(e) ? e.exitCode : null,
    signal: e.signal,
    created_at: iso(e.createdAt),
    started_at: iso(e.startedAt),
    finished_at: iso(e.finishedAt),
    duration_ms: started !== undefined && finished !== undefined ? finished - started : null,
    stdout_bytes: Number(e.stdoutBytes),
    stderr_bytes: Number(e.stderrBytes),
  };
}
