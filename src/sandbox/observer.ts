import type { ExecutionRecord } from "./records.ts";

/** A caller's W3C trace context (`traceparent`): the trace an execution or sandbox creation belongs to. */
export interface TraceParent {
  /** 32 lowercase hex digits */
  traceId: string;
  /** the caller's span (16 hex digits): the parent of the daemon's span */
  spanId: string;
  sampled: boolean;
}

/**
 * What the daemon's telemetry hears from the sandbox part. The daemon passes an implementation in (OpenTelemetry
 * when `observability.enabled`); this part never imports a telemetry library. Times are epoch milliseconds.
 */
export interface SandboxObserver {
  sandboxCreated(event: { sandboxId: string; backend: string; startTimeMs: number; durationMs: number; trace?: TraceParent; reasonCode?: string }): void;
  executionFinished(event: { record: ExecutionRecord; trace?: TraceParent; startTimeMs: number; durationMs: number }): void;
}
