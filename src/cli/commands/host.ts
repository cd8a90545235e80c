import { existsSync } from "node:fs";
import type { DoctorCheckJson, DoctorResponseJson } from "../../api/index.ts";
import type { BackendName, BackendReport, CheckStatus, HostCheck } from "../../backends/index.ts";
import { backendNamed } from "../../config/index.ts";
import { isCleanroomError } from "../../errors/index.ts";
import { printJson } from "../output.ts";
import { followImageProgress, printImage } from "./image.ts";
import { connectClient, type ClientFlags } from "../client.ts";

/** errors of a daemon that is not there (or not ours to reach), as opposed to one that answered */
const UNREACHABLE = new Set(["ENOENT", "ECONNREFUSED", "EACCES", "EHOSTUNREACH", "ENETUNREACH", "ETIMEDOUT", "ECONNRESET"]);
const STATUS_OF_JSON: Record<string, CheckStatus> = { DOCTOR_STATUS_PASS: "pass", DOCTOR_STATUS_WARN: "warn", DOCTOR_STATUS_FAIL: "fail" };

interface DoctorReport {
  checks: HostCheck[];
  backends: BackendReport[];
  defaultBackend: string;
}

/**
 * `cleanroom doctor`: the daemon's host checks, or, when no daemon answers, the same probes run in this process plus a
 * warn that the daemon is not reachable. Exit 1 when any check fails or the backend in question (--backend, else the
 * default) is not usable.
 */
export async function doctor(flags: ClientFlags & { backend?: string; json?: boolean }): Promise<number> {
  if (flags.backend) backendNamed(flags.backend, "--backend");
  const client = connectClient(flags);
  let report: DoctorReport;
  try {
    report = fromResponse(await client.hostService.doctor({ backend: flags.backend ?? "" }));
    report.checks.unshift({ name: "daemon", status: "pass", detail: `reachable at ${client.host}`, hint: "" });
  } catch (err) {
    if (!daemonUnreachable(err)) throw err;
    report = await probeHere();
    report.checks.unshift({
      name: "daemon",
      status: "warn",
      detail: `daemon not reachable at ${client.host}; the host checks below ran in this CLI process`,
      hint: "start it with `cleanroom serve` (as root), or point --host / CLEANROOM_HOST at it",
    });
  }
  const backends = report.backends.filter((b) => !flags.backend || b.backend === flags.backend);
  const inQuestion = flags.backend ?? report.defaultBackend;
  const count = (status: CheckStatus) => report.checks.filter((c) => c.status === status).length;
  const backendUsable = backends.find((b) => b.backend === inQuestion)?.usable ?? false;
  const exitCode = count("fail") === 0 && backendUsable ? 0 : 1;
  const summary = { pass: count("pass"), warn: count("warn"), fail: count("fail") };
  if (flags.json) {
    printJson({
      ok: exitCode === 0,
      default_backend: report.defaultBackend,
      summary,
      checks: report.checks.map(checkJson),
      backends: backends.map((b) => ({ backend: b.backend, usable: b.usable, checks: b.checks.map(checkJson), capabilities: b.capabilities })),
    });
    return exitCode;
  }
  const usable = backends.filter((b) => b.usable).map((b) => b.backend);
  const verdict = flags.backend || !backendUsable
    ? `backend ${inQuestion} is ${backendUsable ? "usable" : "NOT usable"}`
    : `usable backends: ${usable.join(", ")}`;
  printDoctorText({ ...report, backends });
  process.stdout.write(`\n${summary.pass} passed, ${summary.warn} warnings, ${summary.fail} failed; ${verdict}\n`);
  return exitCode;
}

/** One line per host check; per backend, whether it is usable, its problems and its capability map. */
function printDoctorText(report: DoctorReport): void {
  process.stdout.write(report.checks.map((c) => checkLine(c, "")).join(""));
  for (const b of report.backends) {
    const isDefault = b.backend === report.defaultBackend ? " (default)" : "";
    process.stdout.write(`\nbackend ${b.backend}${isDefault}: ${b.usable ? "usable" : "NOT usable"}\n`);
    process.stdout.write(b.checks.filter((c) => c.status !== "pass").map((c) => checkLine(c, "  ")).join(""));
    const caps = Object.entries(b.capabilities).map(([k, v]) => `${k}=${v}`).join(" ");
    if (caps) process.stdout.write(`  capabilities: ${caps}\n`);
  }
}

/** `PASS  name  detail`, and under a warn or fail an indented `fix:` line. */
function checkLine(c: HostCheck, indent: string): string {
  const line = `${indent}${c.status.toUpperCase().padEnd(4)}  ${c.name.padEnd(20)}  ${c.detail}\n`;
  return c.status !== "pass" && c.hint ? `${line}${indent}      fix: ${c.hint}\n` : line;
}

function checkJson(c: HostCheck) {
  return { name: c.name, status: c.status, ok: c.status !== "fail", detail: c.detail, hint: c.hint };
}

/** A daemon that predates `status` only says ok: a not-ok check is then a fail. */
function checkOf(c: DoctorCheckJson): HostCheck {
  const status = STATUS_OF_JSON[c.status ?? ""] ?? (c.ok ? "pass" : "fail");
  return { name: c.name ?? "", status, detail: c.detail ?? "", hint: c.hint ?? "" };
}

function fromResponse(res: DoctorResponseJson): DoctorReport {
  return {
    checks: (res.checks ?? []).map(checkOf),
    backends: (res.backends ?? []).map((b) => ({
      backend: (b.backend ?? "") as BackendName,
      usable: b.usable ?? false,
      checks: (b.checks ?? []).map(checkOf),
      capabilities: b.capabilities ?? {},
    })),
    defaultBackend: res.defaultBackend ?? "",
  };
}

function daemonUnreachable(err: unknown): boolean {
  const cause = err instanceof Error ? (err.cause as NodeJS.ErrnoException | undefined) : undefined;
  return isCleanroomError(err) && typeof cause?.code === "string" && UNREACHABLE.has(cause.code);
}

/** The daemon's probes, run in this process against the paths and config the daemon would use. */
async function probeHere(): Promise<DoctorReport> {
  const [{ probeHost }, config, image] = await Promise.all([import("../../backends/index.ts"), import("../../config/index.ts"), import("../../image/index.ts")]);
  const paths = config.hostPaths();
  const runtime = existsSync(config.runtimeConfigPath()) ? await config.loadRuntimeConfig() : {};
  const ref = image.DEFAULT_BASE_IMAGE_REF;
  // no image dir yet means no image; an ImageStore would create the dir just to find that out
  const find = existsSync(paths.imageDir) ? () => new image.ImageStore({ root: paths.imageDir, idRange: config.sandboxIdRange }).resolveLocal(ref) : async () => undefined;
  const report = await probeHost({ stateDir: paths.stateDir, agentPath: paths.agentPath, idRange: config.sandboxIdRange, defaultImage: { ref, find } });
  return { ...report, defaultBackend: runtime.default_backend ?? "linux" };
}

export async function warmup(flags: { host?: string; backend?: string; json?: boolean }): Promise<number> {
  const client = connectClient(flags);
  printImage(await followImageProgress(client.images.warmup({ backend: flags.backend ?? "" }), Boolean(flags.json)), flags.json);
  return 0;
}

export async function version(flags: { host?: string; json?: boolean }, clientVersion: string): Promise<number> {
  const client = connectClient(flags);
  const server = await client.hostService.getVersion({}).catch(() => undefined);
  if (flags.json) printJson({ client: clientVersion, server: server?.version ?? null, agent_protocol: server?.agentProtocol ?? null });
  else process.stdout.write(`client ${clientVersion}\nserver ${server ? `${server.version} (agent protocol ${server.agentProtocol})` : "unreachable"}\n`);
  return 0;
}
