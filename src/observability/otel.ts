// OpenTelemetry over OTLP/HTTP: spans and metrics made after the fact from what the daemon reports (creation and
// execution times are known when they end). Loaded only when `observability.enabled` (see index.ts).
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, TraceFlags, type Attributes, type Context, type Counter, type Histogram, type Tracer } from "@opentelemetry/api";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { MeterProvider, PeriodicExportingMetricReader, type PushMetricExporter } from "@opentelemetry/sdk-metrics";
import { BasicTracerProvider, BatchSpanProcessor, RandomIdGenerator, TraceIdRatioBasedSampler, type IdGenerator, type SpanExporter } from "@opentelemetry/sdk-trace-base";
import type { Logger } from "pino";
import type { ExecutionFinishedEvent, GatewayRequestEvent, SandboxCreatedEvent, Telemetry, TelemetrySettings, TelemetryTrace } from "./index.ts";

/** how often metrics are pushed between flushes (every close flushes too) */
const METRIC_EXPORT_INTERVAL_MS = 15_000;

/** Random ids, except that the next root span may be given a trace id chosen beforehand (an execution's own). */
class ChosenRootIds implements IdGenerator {
  readonly #random = new RandomIdGenerator();
  next: string | undefined;

  generateTraceId(): string {
    const chosen = this.next;
    this.next = undefined;
    return chosen ?? this.#random.generateTraceId();
  }

  generateSpanId(): string {
    return this.#random.generateSpanId();
  }
}

export async function createTelemetry(settings: TelemetrySettings, log: Logger): Promise<Telemetry> {
  const resource = resourceFromAttributes({ "service.name": "cleanroom", "service.version": settings.serviceVersion });
  const { spans, metrics } = await exporters(settings);
  const ids = new ChosenRootIds();
  const tracerProvider = new BasicTracerProvider({
    resource,
    idGenerator: ids,
    sampler: new TraceIdRatioBasedSampler(settings.sampling),
    spanProcessors: [new BatchSpanProcessor(spans)],
  });
  const meterProvider = new MeterProvider({
    resource,
    readers: [new PeriodicExportingMetricReader({ exporter: metrics, exportIntervalMillis: METRIC_EXPORT_INTERVAL_MS })],
  });
  const tracer = tracerProvider.getTracer("cleanroom", settings.serviceVersion);
  const meter = meterProvider.getMeter("cleanroom", settings.serviceVersion);
  const instruments = {
    createDuration: meter.createHistogram("cleanroom_sandbox_create_duration_seconds", { unit: "s", description: "how long creating a sandbox took" }),
    executions: meter.createCounter("cleanroom_execution_total", { description: "finished executions by status" }),
    gatewayRequests: meter.createCounter("cleanroom_gateway_requests_total", { description: "gateway requests by service, action and reason code" }),
  };
  log.info({ endpoint: settings.endpoint, protocol: settings.protocol, sampling: settings.sampling }, "exporting traces and metrics over OTLP");
  return new OtelTelemetry(tracer, ids, instruments, async () => {
    const results = await Promise.allSettled([tracerProvider.shutdown(), meterProvider.shutdown()]);
    for (const result of results) if (result.status === "rejected") log.warn({ err: result.reason }, "flushing telemetry failed");
  });
}

interface Instruments {
  createDuration: Histogram;
  executions: Counter;
  gatewayRequests: Counter;
}

class OtelTelemetry implements Telemetry {
  readonly #tracer: Tracer;
  readonly #ids: ChosenRootIds;
  readonly #instruments: Instruments;
  readonly #shutdown: () => Promise<void>;

  constructor(tracer: Tracer, ids: ChosenRootIds, instruments: Instruments, shutdown: () => Promise<void>) {
    this.#tracer = tracer;
    this.#ids = ids;
    this.#instruments = instruments;
    this.#shutdown = shutdown;
  }

  sandboxCreated(e: SandboxCreatedEvent): void {
    const attributes: Attributes = { sandbox_id: e.sandboxId, backend: e.backend, ...(e.reasonCode ? { reason_code: e.reasonCode } : {}) };
    this.#span("cleanroom.sandbox.create", e.trace, undefined, e.startTimeMs, e.durationMs, attributes, e.reasonCode);
    this.#instruments.createDuration.record(e.durationMs / 1000, { backend: e.backend, result: e.reasonCode ? "error" : "ok" });
  }

  executionFinished(e: ExecutionFinishedEvent): void {
    const r = e.record;
    // a workload's non-zero exit is its own result (status FAILED), not an error of Cleanroom's
    const failed = r.status === "SUCCEEDED" ? undefined : r.status.toLowerCase();
    const attributes: Attributes = {
      sandbox_id: r.sandboxId, execution_id: r.id, status: r.status,
      ...(r.exitCode !== null ? { exit_code: r.exitCode } : {}), ...(failed ? { reason_code: failed } : {}),
    };
    this.#span("cleanroom.execution.run", e.trace, r.traceId, e.startTimeMs, e.durationMs, attributes, failed && r.status !== "FAILED" ? failed : undefined);
    this.#instruments.executions.add(1, { status: r.status });
  }

  gatewayRequest(e: GatewayRequestEvent): void {
    const attributes: Attributes = {
      sandbox_id: e.sandboxId, service: e.service, action: e.action, reason_code: e.reasonCode,
      "http.request.method": e.method, "http.response.status_code": e.status, "server.address": e.destinationHost,
    };
    this.#span(`cleanroom.gateway.${e.service}.request`, undefined, undefined, e.at.getTime(), e.durationMs, attributes, e.action === "deny" ? e.reasonCode : undefined);
    this.#instruments.gatewayRequests.add(1, { service: e.service, action: e.action, reason_code: e.reasonCode });
  }

  shutdown(): Promise<void> {
    return this.#shutdown();
  }

  /** A finished span: a child of the caller's span when there is one, else a root (in `rootTraceId` if given). */
  #span(name: string, parent: TelemetryTrace | undefined, rootTraceId: string | undefined, startTimeMs: number, durationMs: number, attributes: Attributes, error: string | undefined): void {
    let context: Context = ROOT_CONTEXT;
    if (parent) context = trace.setSpanContext(ROOT_CONTEXT, { traceId: parent.traceId, spanId: parent.spanId, traceFlags: TraceFlags.SAMPLED, isRemote: true });
    else this.#ids.next = rootTraceId;
    const span = this.#tracer.startSpan(name, { kind: SpanKind.SERVER, startTime: startTimeMs, attributes }, context);
    this.#ids.next = undefined;
    if (error) span.setStatus({ code: SpanStatusCode.ERROR, message: error });
    span.end(startTimeMs + Math.max(0, durationMs));
  }
}

async function exporters(settings: TelemetrySettings): Promise<{ spans: SpanExporter; metrics: PushMetricExporter }> {
  const base = settings.endpoint.replace(/\/+$/, "");
  const traces = { url: `${base}/v1/traces`, headers: settings.headers };
  const metrics = { url: `${base}/v1/metrics`, headers: settings.headers };
  if (settings.protocol === "http/protobuf") {
    const [{ OTLPTraceExporter }, { OTLPMetricExporter }] = await Promise.all([import("@opentelemetry/exporter-trace-otlp-proto").then(commonJs), import("@opentelemetry/exporter-metrics-otlp-proto").then(commonJs)]);
    return { spans: new OTLPTraceExporter(traces), metrics: new OTLPMetricExporter(metrics) };
  }
  const [{ OTLPTraceExporter }, { OTLPMetricExporter }] = await Promise.all([import("@opentelemetry/exporter-trace-otlp-http").then(commonJs), import("@opentelemetry/exporter-metrics-otlp-http").then(commonJs)]);
  return { spans: new OTLPTraceExporter(traces), metrics: new OTLPMetricExporter(metrics) };
}

/** A CommonJS package's exports, imported by Node (named exports) or from the CLI bundle (only `default`). */
function commonJs<T extends object>(module: T): T {
  return (module as { default?: T }).default ?? module;
}
