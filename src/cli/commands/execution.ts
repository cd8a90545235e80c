import type { ExecutionJson } from "../../api/index.ts";
import { enumName } from "../../sdk/index.ts";
import { age, ownerView, printJson, printTable } from "../output.ts";
import { connectClient } from "../client.ts";

const TAIL_BYTES = 64 * 1024;
const FINISHED = new Set(["SUCCEEDED", "FAILED", "CANCELED", "TIMED_OUT"]);

export async function listExecutions(flags: { host?: string; sandboxId?: string; all?: boolean; json?: boolean }): Promise<number> {
  const client = connectClient(flags);
  const executions = (await client.executions.listExecutions({ sandboxId: flags.sandboxId ?? "", all: Boolean(flags.all) })).executions ?? [];
  const views = executions.map(executionView);
  if (flags.json) {
    printJson(views);
    return 0;
  }
  printTable(
    ["EXECUTION ID", "SANDBOX ID", "STATUS", "EXIT", "COMMAND", "CREATED"],
    views.map((e) => [e.execution_id, e.sandbox_id, e.status, e.exit_code === null ? "" : String(e.exit_code), e.command.join(" ").slice(0, 40), age(e.created_at)]),
  );
  return 0;
}

export async function inspectExecution(id: string, flags: { host?: string; json?: boolean }): Promise<number> {
  const client = connectClient(flags);
  const res = await client.executions.inspectExecution({ executionId: id, outputBytes: TAIL_BYTES });
  const t = res.timings;
  const timings = t ? { rootfs_prep: t.rootfsPrepMs ?? 0, network_setup: t.networkSetupMs ?? 0, ready: t.readyMs ?? 0, command: t.commandMs ?? 0, total: t.totalMs ?? 0 } : null;
  const info = { ...executionView(res.execution ?? {}), artifacts_dir: res.artifactsDir ?? "", trace_id: res.traceId ?? "", trace_url: res.traceUrl ?? "" };
  const stdout = Buffer.from(res.stdoutTail ?? "", "base64").toString("utf8");
  const stderr = Buffer.from(res.stderrTail ?? "", "base64").toString("utf8");
  if (flags.json) {
    printJson({ ...info, timings_ms: timings, stdout, stderr });
    return 0;
  }
  for (const [key, value] of Object.entries(info)) process.stdout.write(`${key.padEnd(16)}${Array.isArray(value) ? value.join(" ") : String(value)}\n`);
  if (timings) process.stdout.write(`${"timings_ms".padEnd(16)}${Object.entries(timings).map(([step, ms]) => `${step}=${ms}`).join(" ")}\n`);
  if (stdout) process.stdout.write(`--- stdout (last ${TAIL_BYTES / 1024} KiB) ---\n${stdout}${stdout.endsWith("\n") ? "" : "\n"}`);
  if (stderr) process.stdout.write(`--- stderr (last ${TAIL_BYTES / 1024} KiB) ---\n${stderr}${stderr.endsWith("\n") ? "" : "\n"}`);
  return 0;
}

/** The execution as the CLI shows it (snake_case, Cleanroom's field names). */
function executionView(e: ExecutionJson) {
  const status = enumName(e.status, "EXECUTION_STATUS_");
  const started = e.startedAt ? Date.parse(e.startedAt) : undefined;
  const finished = e.finishedAt ? Date.parse(e.finishedAt) : undefined;
  return {
    execution_id: e.executionId ?? "",
    sandbox_id: e.sandboxId ?? "",
    status,
    status_reason: e.statusReason ?? "",
    command: e.command ?? [],
    tty: e.tty ?? false,
    exit_code: FINISHED.has(status) ? (e.exitCode ?? 0) : null,
    signal: e.signal ?? "",
    created_at: e.createdAt ?? "",
    started_at: e.startedAt ?? "",
    finished_at: e.finishedAt ?? "",
    duration_ms: started !== undefined && finished !== undefined ? finished - started : null,
    stdout_bytes: Number(e.stdoutBytes ?? 0),
    stderr_bytes: Number(e.stderrBytes ?? 0),
    ...ownerView(e.owner),
  };
}
