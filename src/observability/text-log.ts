// `observability.logs.format: text`: pino's JSON events as one readable line each, fields as key=value.
import type { DestinationStream } from "pino";

const LEVEL_NAMES: Record<number, string> = { 10: "TRACE", 20: "DEBUG", 30: "INFO", 40: "WARN", 50: "ERROR", 60: "FATAL" };

/** A pino destination writing text lines to `out`. */
export function textLogStream(out: NodeJS.WritableStream): DestinationStream {
  return { write: (line: string) => void out.write(formatLogLine(line)) };
}

/** `2026-01-02T03:04:05.678Z INFO  execution finished sandbox_id=… exit_code=0` (pure). */
export function formatLogLine(line: string): string {
  let event: Record<string, unknown>;
  try {
    event = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line.endsWith("\n") ? line : `${line}\n`;
  }
  const { time, level, msg, service: _service, pid: _pid, hostname: _hostname, ...fields } = event;
  const parts = [new Date(Number(time)).toISOString(), (LEVEL_NAMES[Number(level)] ?? String(level)).padEnd(5), String(msg ?? "")];
  for (const [key, value] of Object.entries(fields)) parts.push(`${key}=${fieldText(key, value)}`);
  return `${parts.join(" ")}\n`;
}

function fieldText(key: string, value: unknown): string {
  if (key === "err" && value && typeof value === "object" && "message" in value) return JSON.stringify(String((value as { message: unknown }).message));
  if (typeof value === "string") return /^[^\s"=]+$/.test(value) ? value : JSON.stringify(value);
  return JSON.stringify(value) ?? "";
}
