import { Cleanroom } from "../../sdk/index.ts";
import { printJson } from "../output.ts";
import { followImageProgress, printImage } from "./image.ts";

export async function doctor(flags: { host?: string; backend?: string; json?: boolean }): Promise<number> {
  const client = new Cleanroom({ ...(flags.host ? { host: flags.host } : {}) });
  const report = await client.call(() => client.hostService.doctor({ backend: flags.backend ?? "" }));
  const backends = report.backends.filter((b) => !flags.backend || b.backend === flags.backend);
  if (flags.json) {
    printJson({
      default_backend: report.defaultBackend,
      checks: report.checks.map(({ name, ok, detail }) => ({ name, ok, detail })),
      backends: backends.map((b) => ({ backend: b.backend, usable: b.usable, checks: b.checks.map(({ name, ok, detail }) => ({ name, ok, detail })), capabilities: b.capabilities })),
    });
    return backends.some((b) => b.usable) ? 0 : 1;
  }
  process.stdout.write("host:\n");
  for (const c of report.checks) process.stdout.write(`  ${c.ok ? "ok  " : "FAIL"}  ${c.name.padEnd(24)} ${c.detail}\n`);
  for (const b of backends) {
    const isDefault = b.backend === report.defaultBackend ? " (default)" : "";
    process.stdout.write(`backend ${b.backend}${isDefault}: ${b.usable ? "usable" : "NOT usable"}\n`);
    for (const c of b.checks) process.stdout.write(`  ${c.ok ? "ok  " : "FAIL"}  ${c.name.padEnd(24)} ${c.detail}\n`);
    const caps = Object.entries(b.capabilities).map(([k, v]) => `${k}=${v}`).join(" ");
    if (caps) process.stdout.write(`  capabilities: ${caps}\n`);
  }
  return backends.some((b) => b.usable) ? 0 : 1;
}

export async function warmup(flags: { host?: string; backend?: string; json?: boolean }): Promise<number> {
  const client = new Cleanroom({ ...(flags.host ? { host: flags.host } : {}) });
  const image = await followImageProgress(client.stream(() => client.images.warmup({ backend: flags.backend ?? "" })), Boolean(flags.json));
  printImage(image, flags.json);
  return 0;
}

export async function version(flags: { host?: string; json?: boolean }, clientVersion: string): Promise<number> {
  const client = new Cleanroom({ ...(flags.host ? { host: flags.host } : {}) });
  const server = await client.call(() => client.hostService.getVersion({})).catch(() => undefined);
  if (flags.json) printJson({ client: clientVersion, server: server?.version ?? null, agent_protocol: server?.agentProtocol ?? null });
  else process.stdout.write(`client ${clientVersion}\nserver ${server ? `${server.version} (agent protocol ${server.agentProtocol})` : "unreachable"}\n`);
  return 0;
}
