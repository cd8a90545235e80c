import type { RepositoryStateJson, SandboxJson } from "../../api/index.ts";
import { exposeHttpsPolicyOf } from "../../expose/index.ts";
import { enumName } from "../../sdk/index.ts";
import { age, ownerView, printJson, printTable } from "../output.ts";
import { checkoutRootForSync, createFromSource, exposureCommandsFor, sandboxSourceWithWarnings } from "./exec.ts";
import { connectClient } from "../client.ts";

export interface CreateFlags {
  host?: string; chdir?: string; image?: string; repoUrl?: string; repoCommit?: string; backend?: string; launchSeconds?: string; dangerouslyAllowAll?: boolean; json?: boolean;
  copyIn?: boolean;
  from?: string;
  /** keep forwarding to the new sandbox until interrupted (the sandbox stays afterwards) */
  expose?: string[];
  exposeHttps?: string[];
}

/** `create` reads the repository's policy (-c); `sandbox create` is repository-agnostic. */
export async function createSandbox(flags: CreateFlags, opts: { readPolicy: boolean }): Promise<number> {
  const client = connectClient(flags);
  const exposing = await exposureCommandsFor(flags);
  const source = opts.readPolicy && !flags.from ? await sandboxSourceWithWarnings(flags) : { warnings: [] };
  const syncRoot = flags.copyIn ? await checkoutRootForSync(flags.chdir) : undefined;
  const sandbox = await createFromSource(client, flags, source);
  if (syncRoot) {
    // a sandbox without the changes it was made for is of no use: it goes when the copy-in fails
    const { copyInAround } = await import("./workspace.ts");
    await copyInAround(client, sandbox.id, syncRoot).catch(async (err: unknown) => {
      await sandbox.terminate({ wait: false }).catch(() => undefined);
      throw err;
    });
  }
  if (flags.json) printJson(sandboxView(sandbox.info));
  else process.stdout.write(`${sandbox.id}\n`);
  const exposure = await exposing?.startSandboxExposure(client, sandbox, flags);
  return exposure ? exposing!.holdExposure(client, sandbox.id, exposure) : 0;
}

export async function listSandboxes(flags: { host?: string; all?: boolean; json?: boolean }): Promise<number> {
  const client = connectClient(flags);
  const sandboxes = (await client.sandboxes.listSandboxes({ all: Boolean(flags.all) })).sandboxes ?? [];
  if (flags.json) {
    printJson(sandboxes.map(sandboxView));
    return 0;
  }
  printTable(
    ["SANDBOX ID", "STATUS", "BACKEND", "IMAGE", "CREATED"],
    sandboxes.map((s) => {
      const v = sandboxView(s);
      return [v.sandbox_id, v.status, v.backend, v.image_ref, age(v.created_at)];
    }),
  );
  return 0;
}

export async function inspectSandbox(id: string, flags: { host?: string; json?: boolean }): Promise<number> {
  const client = connectClient(flags);
  const res = await client.sandboxes.getSandbox({ sandboxId: id });
  const view = sandboxView(res.sandbox ?? {});
  const events = (res.recentEvents ?? []).map((e) => ({
    sequence: Number(e.sequence ?? 0), time: e.time ?? "", type: e.type ?? "", message: e.message ?? "", reason_code: e.reasonCode ?? "", attributes: e.attributes ?? {},
  }));
  if (flags.json) {
    printJson({ ...view, events });
    return 0;
  }
  for (const [key, value] of Object.entries(view)) {
    if (typeof value !== "object") process.stdout.write(`${key.padEnd(22)}${String(value)}\n`);
  }
  process.stdout.write(`${"resources".padEnd(22)}${view.resources.vcpus} vCPU, ${view.resources.memory_mib} MiB, ${view.resources.pids_limit} pids\n`);
  if (view.repository) process.stdout.write(`${"repository".padEnd(22)}${view.repository.remote_url} at ${view.repository.commit}${view.repository.branch ? ` (${view.repository.branch})` : ""} in ${view.repository.path}\n`);
  if (view.dangerously_allow_all) process.stdout.write("WARNING               egress is NOT restricted (--dangerously-allow-all)\n");
  if (events.length) {
    process.stdout.write("events:\n");
    for (const e of events) process.stdout.write(`  ${e.time}  ${e.type.padEnd(20)} ${e.message}${e.reason_code ? ` [${e.reason_code}]` : ""}\n`);
  }
  return 0;
}

export async function setSuspended(id: string, suspended: boolean, flags: { host?: string }): Promise<number> {
  const client = connectClient(flags);
  const { sandbox } = suspended ? await client.sandboxes.suspendSandbox({ sandboxId: id }) : await client.sandboxes.resumeSandbox({ sandboxId: id });
  process.stdout.write(`${id} ${enumName(sandbox?.status, "SANDBOX_STATUS_")}\n`);
  return 0;
}

export async function removeSandboxes(ids: string[], flags: { host?: string }): Promise<number> {
  const client = connectClient(flags);
  for (const id of ids) {
    await client.sandboxes.terminateSandbox({ sandboxId: id });
    process.stdout.write(`${id}\n`);
  }
  return 0;
}

/** The sandbox as the CLI shows it (snake_case, Cleanroom's field names). */
function sandboxView(s: SandboxJson) {
  return {
    sandbox_id: s.sandboxId ?? "",
    status: enumName(s.status, "SANDBOX_STATUS_"),
    status_reason: s.statusReason ?? "",
    policy_hash: s.policyHash ?? "",
    backend: s.backend ?? "",
    image_ref: s.imageRef ?? "",
    image_digest: s.imageDigest ?? "",
    created_at: s.createdAt ?? "",
    updated_at: s.updatedAt ?? "",
    dangerously_allow_all: s.dangerouslyAllowAll ?? false,
    resources: { vcpus: s.resources?.vcpus ?? 0, memory_mib: s.resources?.memoryMib ?? 0, pids_limit: s.resources?.pidsLimit ?? 0 },
    labels: s.labels ?? {},
    ...(s.repository ? { repository: repositoryView(s.repository) } : {}),
    ...(s.fromSnapshotId ? { from_snapshot_id: s.fromSnapshotId } : {}),
    ...(s.exposeHttps ? { expose_https: exposeHttpsPolicyOf(s.exposeHttps) } : {}),
    ...ownerView(s.owner),
  };
}

/** A sandbox's or snapshot's repository as the CLI shows it. */
export function repositoryView(r: RepositoryStateJson) {
  return { remote_url: r.remoteUrl ?? "", commit: r.commit ?? "", branch: r.branch ?? "", path: r.path ?? "" };
}
