import { timestampDate } from "@bufbuild/protobuf/wkt";
import { SandboxStatus, type Sandbox } from "../../api/index.ts";
import { Cleanroom } from "../../sdk/index.ts";
import { age, printJson, printTable } from "../output.ts";
import { parsePositiveInt } from "./exec.ts";

export interface CreateFlags { host?: string; image?: string; backend?: string; launchSeconds?: string; dangerouslyAllowAll?: boolean; json?: boolean }

export async function createSandbox(flags: CreateFlags): Promise<number> {
  const client = new Cleanroom({ ...(flags.host ? { host: flags.host } : {}) });
  const sandbox = await client.createSandbox({
    ...(flags.image ? { image: flags.image } : {}),
    ...(flags.backend ? { backend: flags.backend } : {}),
    ...(flags.launchSeconds ? { launchSeconds: parsePositiveInt(flags.launchSeconds, "--launch-seconds") } : {}),
    ...(flags.dangerouslyAllowAll ? { dangerouslyAllowAll: true } : {}),
  });
  if (flags.json) printJson(sandboxJson(sandbox.info));
  else process.stdout.write(`${sandbox.id}\n`);
  return 0;
}

export async function listSandboxes(flags: { host?: string; all?: boolean; json?: boolean }): Promise<number> {
  const client = new Cleanroom({ ...(flags.host ? { host: flags.host } : {}) });
  const res = await client.call(() => client.sandboxes.listSandboxes({ all: Boolean(flags.all) }));
  if (flags.json) {
    printJson(res.sandboxes.map(sandboxJson));
    return 0;
  }
  printTable(
    ["SANDBOX ID", "STATUS", "BACKEND", "IMAGE", "CREATED"],
    res.sandboxes.map((s) => [s.sandboxId, SandboxStatus[s.status], s.backend, s.imageRef, age(s.createdAt && timestampDate(s.createdAt))]),
  );
  return 0;
}

export async function inspectSandbox(id: string, flags: { host?: string; json?: boolean }): Promise<number> {
  const client = new Cleanroom({ ...(flags.host ? { host: flags.host } : {}) });
  const res = await client.call(() => client.sandboxes.getSandbox({ sandboxId: id }));
  const sandbox = res.sandbox!;
  const events = res.recentEvents.map((e) => ({ sequence: Number(e.sequence), time: e.time ? timestampDate(e.time).toISOString() : "", type: e.type, message: e.message, reason_code: e.reasonCode, attributes: e.attributes }));
  if (flags.json) {
    printJson({ ...sandboxJson(sandbox), events });
    return 0;
  }
  const info = sandboxJson(sandbox);
  for (const [key, value] of Object.entries(info)) {
    if (typeof value === "object") continue;
    process.stdout.write(`${key.padEnd(22)}${String(value)}\n`);
  }
  process.stdout.write(`${"resources".padEnd(22)}${info.resources.vcpus} vCPU, ${info.resources.memory_mib} MiB, ${info.resources.pids_limit} pids\n`);
  if (sandbox.dangerouslyAllowAll) process.stdout.write("WARNING               egress is NOT restricted (--dangerously-allow-all)\n");
  if (events.length) {
    process.stdout.write("events:\n");
    for (const e of events) process.stdout.write(`  ${e.time}  ${e.type.padEnd(20)} ${e.message}${e.reason_code ? ` [${e.reason_code}]` : ""}\n`);
  }
  return 0;
}

export async function removeSandboxes(ids: string[], flags: { host?: string }): Promise<number> {
  const client = new Cleanroom({ ...(flags.host ? { host: flags.host } : {}) });
  for (const id of ids) {
    await client.call(() => client.sandboxes.terminateSandbox({ sandboxId: id }));
    process.stdout.write(`${id}\n`);
  }
  return 0;
}

function sandboxJson(s: Sandbox) {
  return {
    sandbox_id: s.sandboxId,
    status: SandboxStatus[s.status],
    status_reason: s.statusReason,
    backend: s.backend,
    image_ref: s.imageRef,
    image_digest: s.imageDigest,
    created_at: s.createdAt ? timestampDate(s.createdAt).toISOString() : "",
    updated_at: s.updatedAt ? timestampDate(s.updatedAt).toISOString() : "",
    dangerously_allow_all: s.dangerouslyAllowAll,
    resources: { vcpus: s.resources?.vcpus ?? 0, memory_mib: s.resources?.memoryMib ?? 0, pids_limit: s.resources?.pidsLimit ?? 0 },
    labels: s.labels,
  };
}
