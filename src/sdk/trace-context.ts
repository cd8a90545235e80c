import { randomBytes } from "node:crypto";

/** A new W3C trace context: the caller's root span, sent to the daemon as `traceparent`. */
export interface TraceContext {
  /** 32 hex digits */
  traceId: string;
  /** 16 hex digits */
  spanId: string;
  /** `00-<trace id>-<span id>-01` (sampled) */
  traceparent: string;
}

export function newTraceContext(): TraceContext {
  const traceId = randomBytes(16).toString("hex");
  const spanId = randomBytes(8).toString("hex");
  return { traceId, spanId, traceparent: `00-${traceId}-${spanId}-01` };
}
