import type { DoctorCheckJson } from "../../api/index.ts";
import { printJson } from "../output.ts";
import { followImageProgress, printImage } from "./image.ts";
import { connectClient } from "../client.ts";

function checkView(c: DoctorCheckJson) {
  return { name: c.name ?? "", ok: c.ok ?? false, detail: c.detail ?? "" };
}

export async function doctor(flags: { host?: string; backend?: string; json?: boolean }): Promise<number> {
  const client = connectClient(flags);
  const report = await client.hostService.doctor({ backend: flags.backend ?? "" });
  const checks = (report.checks ?? []).map(checkView);
  const backends = (report.backends ?? [])
    .filter((b) => !flags.backend || b.backend === flags.backend)
    .map((b) => ({ backend: b.backend ?? "", usable: b.usable ?? false, checks: (b.checks ?? []).map(checkView), capabilities: b.capabilities ?? {} }));
  const exitCode = backends.some((b) => b.usable) ? 0 : 1;
  if (flags.json) {
    printJson({ default_backend: report.defaultBackend ?? "", checks, backends });
    return exitCode;
  }
  const line = (c: ReturnType<typeof checkView>) => `  ${c.ok ? "ok  " : "FAIL"}  ${c.name.padEnd(24)} ${c.detail}\n`;
  process.stdout.write(`host:\n${checks.map(line).join("")}`);
  for (const b of backends) {
    const isDefault = b.backend === report.defaultBackend ? " (default)" : "";
    process.stdout.write(`backend ${b.backend}${isDefault}: ${b.usable ? "usable" : "NOT usable"}\n${b.checks.map(line).join("")}`);
    const caps = Object.entries(b.capabilities).map(([k, v]) => `${k}=${v}`).join(" ");
    if (caps) process.stdout.write(`  capabilities: ${caps}\n`);
  }
  return exitCode;
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
