import { pino, type Logger } from "pino";
import { textLogStream } from "./text-log.ts";

export type { Logger };

export type LogFormat = "text" | "json";

/** The daemon's logger: one event per line on stderr (JSON, or text for people), ids as fields. */
export function createLogger(level: string = process.env.CLEANROOM_LOG_LEVEL ?? "info", format: LogFormat = "json"): Logger {
  const opts = { level, base: { service: "cleanroom" } };
  return format === "text" ? pino(opts, textLogStream(process.stderr)) : pino(opts, pino.destination({ dest: 2, sync: false }));
}

/** A logger that drops everything; for tests and library callers that bring none. */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}

/** A caller's W3C trace context: the daemon's span becomes a child of `spanId` in `traceId`. */
export interface TelemetryTrace {
  traceId: string;
  spanId: string;
  sampled: boolean;
}

/** Times are epoch milliseconds. */
export interface SandboxCreatedEvent {
  sandboxId: string;
  backend: string;
  startTimeMs: number;
  durationMs: number;
  trace?: TelemetryTrace;
  /** set when the creation failed */
  reasonCode?: string;
}

export interface ExecutionFinishedEvent {
  record: { id: string; sandboxId: string; status: string; exitCode: number | null; traceId?: string };
  trace?: TelemetryTrace;
  startTimeMs: number;
  durationMs: number;
}

export interface GatewayRequestEvent {
  sandboxId: string;
  service: string;
  action: string;
  reasonCode: string;
  method: string;
  destinationHost: string;
  status: number;
  durationMs: number;
  at: Date;
}

/** Spans and metrics of the daemon's work; `shutdown` flushes what is pending. */
export interface Telemetry {
  sandboxCreated(event: SandboxCreatedEvent): void;
  executionFinished(event: ExecutionFinishedEvent): void;
  gatewayRequest(event: GatewayRequestEvent): void;
  shutdown(): Promise<void>;
}

export interface TelemetrySettings {
  /** the collector's base URL (…/v1/traces and …/v1/metrics are appended) */
  endpoint: string;
  protocol: "http/json" | "http/protobuf";
  headers: Record<string, string>;
  /** the share of traces exported, 0..1 */
  sampling: number;
  serviceVersion: string;
}

/** OpenTelemetry over OTLP/HTTP. The SDK is imported here, on first use, so nothing loads it unless enabled. */
export async function startTelemetry(settings: TelemetrySettings, log: Logger): Promise<Telemetry> {
  const { createTelemetry } = await import("./otel.ts");
  return createTelemetry(settings, log);
}

export type { ProfilingServer } from "./profiling-server.ts";

/** `serve --pprof-listen`: heap snapshots and CPU profiles over HTTP on loopback (refuses any other address). */
export async function startProfilingServer(listen: string, log: Logger): Promise<import("./profiling-server.ts").ProfilingServer> {
  const { startProfilingServer: start } = await import("./profiling-server.ts");
  return start(listen, log);
}

/** Checks a `--pprof-listen` value (loopback HOST:PORT) without starting anything. */
export async function checkProfilingListen(listen: string): Promise<void> {
  (await import("./profiling-server.ts")).parseProfilingListen(listen);
}
