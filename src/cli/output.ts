import { CleanroomError, messageOf } from "../errors/index.ts";

/** Prints rows as an aligned table with a header. */
export function printTable(headers: string[], rows: string[][]): void {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join("  ");
  process.stdout.write(`${[line(headers), ...rows.map(line)].join("\n")}\n`);
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? Number(v) : v), 2)}\n`);
}

/** The CLI's one error edge: a message with the reason code, and an exit code. */
export function reportError(err: unknown, json: boolean): number {
  const code = err instanceof CleanroomError ? err.code : "internal";
  if (json) printJson({ error: { reason_code: code, message: messageOf(err) } });
  else process.stderr.write(`cleanroom: ${messageOf(err)} [${code}]\n`);
  if (!(err instanceof CleanroomError) && process.env.CLEANROOM_DEBUG) console.error(err);
  return 1;
}

/** "3s ago"-style age of an RFC 3339 time. */
export function age(time: string | undefined): string {
  if (!time) return "";
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(time)) / 1000));
  if (seconds < 60) return `${seconds}s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)}m ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)}h ago`;
  return `${Math.round(seconds / 86400)}d ago`;
}

export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

/** A resource's owner on a shared server, as JSON output shows it (nothing for a resource a local caller made). */
export function ownerView(owner: { principalId?: string; scope?: string } | undefined): { owner?: { principal_id: string; scope: string } } {
  return owner ? { owner: { principal_id: owner.principalId ?? "", scope: owner.scope ?? "" } } : {};
}
