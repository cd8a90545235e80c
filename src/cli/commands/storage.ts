import { createInterface } from "node:readline/promises";
import { CleanroomError } from "../../errors/index.ts";
import { formatBytes, printJson, printTable } from "../output.ts";
import { connectClient } from "../client.ts";

type Flags = { host?: string; json?: boolean };

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 7 * 86400 };

/** `7d`, `12h`, `30m`, `90s`, `2w` as seconds. */
export function parseAge(text: string): number {
  const match = /^(\d+)([smhdw])$/.exec(text.trim());
  if (!match) throw new CleanroomError("invalid_argument", `--older-than ${JSON.stringify(text)}: write a number and a unit (s, m, h, d, w), e.g. 7d`);
  return Number(match[1]) * UNIT_SECONDS[match[2]!]!;
}

/** `system df`: storage by category, with what `system prune` and `system prune --all` would free. */
export async function diskUsage(flags: Flags): Promise<number> {
  const client = connectClient(flags);
  const usage = await client.hostService.storageUsage({ selection: { all: false, olderThanSeconds: "0" } });
  const rows = (usage.categories ?? []).map((c) => ({
    category: c.category ?? "",
    count: c.count ?? 0,
    active: c.active ?? 0,
    bytes: Number(c.bytes ?? 0),
    reclaimable_count: c.reclaimableCount ?? 0,
    reclaimable_bytes: Number(c.reclaimableBytes ?? 0),
    all_reclaimable_count: c.allReclaimableCount ?? 0,
    all_reclaimable_bytes: Number(c.allReclaimableBytes ?? 0),
  }));
  if (flags.json) {
    const allReclaimable = rows.reduce((total, r) => total + r.all_reclaimable_bytes, 0);
    printJson({ categories: rows, total_bytes: Number(usage.totalBytes ?? 0), reclaimable_bytes: Number(usage.reclaimableBytes ?? 0), all_reclaimable_bytes: allReclaimable });
    return 0;
  }
  printTable(
    ["CATEGORY", "COUNT", "ACTIVE", "SIZE", "RECLAIMABLE", "WITH --all"],
    rows.map((r) => [r.category, String(r.count), String(r.active), formatBytes(r.bytes), `${formatBytes(r.reclaimable_bytes)} (${r.reclaimable_count})`, `${formatBytes(r.all_reclaimable_bytes)} (${r.all_reclaimable_count})`]),
  );
  return 0;
}

/** `system prune`: removes leftovers (or, with --all, everything no live sandbox uses); asks first on a terminal. */
export async function prune(flags: Flags & { dryRun?: boolean; force?: boolean; all?: boolean; olderThan?: string }): Promise<number> {
  const client = connectClient(flags);
  const selection = { all: Boolean(flags.all), olderThanSeconds: String(flags.olderThan ? parseAge(flags.olderThan) : 0) };
  if (!flags.dryRun && !flags.force) {
    if (!process.stdin.isTTY || !process.stderr.isTTY) throw new CleanroomError("failed_precondition", "system prune removes data and there is no terminal to confirm on; pass --force (or --dry-run to see what it would remove)");
    const preview = await client.hostService.pruneStorage({ selection, dryRun: true });
    const ask = createInterface({ input: process.stdin, output: process.stderr });
    const answer = await ask.question(`Remove ${preview.removed?.length ?? 0} item(s), ${formatBytes(Number(preview.reclaimedBytes ?? 0))}? [y/N] `);
    ask.close();
    if (!/^y(es)?$/i.test(answer.trim())) return 1;
  }
  const result = await client.hostService.pruneStorage({ selection, dryRun: Boolean(flags.dryRun) });
  const removed = (result.removed ?? []).map((item) => ({ category: item.category ?? "", id: item.id ?? "", bytes: Number(item.bytes ?? 0), last_used_at: item.lastUsedAt ?? "" }));
  if (flags.json) {
    printJson({ dry_run: Boolean(result.dryRun), removed, reclaimed_bytes: Number(result.reclaimedBytes ?? 0) });
    return 0;
  }
  for (const item of removed) process.stdout.write(`${flags.dryRun ? "would remove" : "removed"} ${item.category} ${item.id} (${formatBytes(item.bytes)})\n`);
  process.stdout.write(`${flags.dryRun ? "would free" : "freed"} ${formatBytes(Number(result.reclaimedBytes ?? 0))}\n`);
  return 0;
}
