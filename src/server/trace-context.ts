// The caller's W3C trace context: read from `traceparent` by an interceptor, handed to handlers as a context value.
import { createContextKey, type HandlerContext, type Interceptor } from "@connectrpc/connect";
import { isCleanroomError } from "../errors/index.ts";
import type { Logger } from "../observability/index.ts";
import type { TraceParent } from "../sandbox/index.ts";

const callerTrace = createContextKey<TraceParent | undefined>(undefined, { description: "the caller's traceparent" });

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** A `traceparent` header (version 00) as a TraceParent; anything malformed, or all-zero ids, is no trace. */
export function parseTraceParent(header: string | null | undefined): TraceParent | undefined {
  const match = TRACEPARENT.exec(header?.trim().toLowerCase() ?? "");
  if (!match) return undefined;
  const [, traceId, spanId, flags] = match as unknown as [string, string, string, string];
  if (/^0+$/.test(traceId) || /^0+$/.test(spanId)) return undefined;
  return { traceId, spanId, sampled: (Number.parseInt(flags, 16) & 1) === 1 };
}

/** Puts the caller's trace (if it sent one) where handlers find it, and logs failed calls with their reason code. */
export function traceInterceptor(log: Logger): Interceptor {
  return (next) => async (req) => {
    const trace = parseTraceParent(req.header.get("traceparent"));
    if (trace) req.contextValues.set(callerTrace, trace);
    try {
      return await next(req);
    } catch (err) {
      log.warn({ ...(trace ? { trace_id: trace.traceId } : {}), method: req.method.name, reason_code: isCleanroomError(err) ? err.code : "internal" }, "request failed");
      throw err;
    }
  };
}

/** `{ trace: … }` when the call carried a traceparent, to spread into a supervisor input. */
export function traceOf(ctx: HandlerContext): { trace?: TraceParent } {
  const trace = ctx.values.get(callerTrace);
  return trace ? { trace } : {};
}

/** `observability.traces.url_template` with the trace id filled in ("" without a template or trace). */
export function traceUrl(template: string | undefined, traceId: string | undefined): string {
  return template && traceId ? template.replaceAll("{trace_id}", traceId) : "";
}
