import type { SnapshotJson } from "../../api/index.ts";
import { age, formatBytes, ownerView, printJson, printTable } from "../output.ts";
import { repositoryView } from "./sandbox.ts";
import { connectClient } from "../client.ts";

type Flags = { host?: string; json?: boolean };

export async function createSnapshot(sandboxId: string, flags: Flags & { name?: string }): Promise<number> {
  const { snapshot } = await connectClient(flags).snapshots.createSnapshot({ sandboxId, name: flags.name ?? "" });
  if (flags.json) printJson(snapshotView(snapshot ?? {}));
  else process.stdout.write(`${snapshot?.snapshotId ?? ""}\n`);
  return 0;
}

export async function listSnapshots(flags: Flags): Promise<number> {
  const snapshots = ((await connectClient(flags).snapshots.listSnapshots({})).snapshots ?? []).map(snapshotView);
  if (flags.json) printJson(snapshots);
  else printTable(["SNAPSHOT ID", "NAME", "SANDBOX", "SIZE", "CREATED"], snapshots.map((s) => [s.snapshot_id, s.name, s.sandbox_id, formatBytes(s.disk_bytes), age(s.created_at)]));
  return 0;
}

export async function inspectSnapshot(id: string, flags: Flags): Promise<number> {
  const view = snapshotView((await connectClient(flags).snapshots.getSnapshot({ snapshotId: id })).snapshot ?? {});
  if (flags.json) printJson(view);
  else for (const [key, value] of Object.entries(view)) process.stdout.write(`${key.padEnd(16)}${typeof value === "object" ? JSON.stringify(value) : String(value)}\n`);
  return 0;
}

export async function removeSnapshots(ids: string[], flags: Flags): Promise<number> {
  const client = connectClient(flags);
  for (const id of ids) {
    await client.snapshots.deleteSnapshot({ snapshotId: id });
    process.stdout.write(`${id}\n`);
  }
  return 0;
}

function snapshotView(s: SnapshotJson) {
  return {
    snapshot_id: s.snapshotId ?? "",
    name: s.name ?? "",
    sandbox_id: s.sandboxId ?? "",
    created_at: s.createdAt ?? "",
    backend: s.backend ?? "",
    image_ref: s.imageRef ?? "",
    image_digest: s.imageDigest ?? "",
    policy_hash: s.policyHash ?? "",
    disk_bytes: Number(s.diskBytes ?? 0),
    ...(s.repository ? { repository: repositoryView(s.repository) } : {}),
    ...ownerView(s.owner),
  };
}
