import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { createServer, type Server } from "node:http";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { ensureBaseImage, runCli, startTestDaemon, type TestDaemon } from "../fixtures/daemon.ts";
import { freePort } from "../fixtures/ports.ts";

const TRACE_URL_TEMPLATE = "https://tempo.example/trace/{trace_id}";

interface OtlpSpan {
  name: string;
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  attributes?: { key: string; value: Record<string, unknown> }[];
}

/** An OTLP/HTTP (JSON) collector on loopback: keeps what is posted to /v1/traces and /v1/metrics. */
async function otlpReceiver(t: TestContext): Promise<{ endpoint: string; requests: string[]; spans(): OtlpSpan[]; metricNames(): string[] }> {
  const requests: string[] = [];
  const traces: unknown[] = [];
  const metrics: unknown[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      requests.push(`${req.method} ${req.url}`);
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}") as unknown;
      if (req.url === "/v1/traces") traces.push(body);
      if (req.url === "/v1/metrics") metrics.push(body);
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.after(() => new Promise((resolve) => server.close(resolve)));
  const port = (server.address() as { port: number }).port;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests,
    spans: () => traces.flatMap((body) => (body as { resourceSpans: { scopeSpans: { spans: OtlpSpan[] }[] }[] }).resourceSpans.flatMap((r) => r.scopeSpans.flatMap((s) => s.spans))),
    metricNames: () => metrics.flatMap((body) => (body as { resourceMetrics: { scopeMetrics: { metrics: { name: string }[] }[] }[] }).resourceMetrics.flatMap((r) => r.scopeMetrics.flatMap((s) => s.metrics.map((m) => m.name)))),
  };
}

/** `exec --print-sandbox-id --print-trace-id -- echo hi`, and the one execution it made, inspected. */
async function execAndInspect(daemon: TestDaemon) {
  const result = await daemon.cli(["exec", "--print-trace-id", "--print-sandbox-id", "--", "echo", "hi"]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout, "hi\n");
  const [traceLine, sandboxId] = result.stderr.trim().split("\n");
  const traceId = /^trace_id: ([0-9a-f]{32})$/.exec(traceLine ?? "")?.[1];
  assert.ok(traceId, `expected "trace_id: <id>" first on stderr, got ${JSON.stringify(result.stderr)}`);
  const listed = JSON.parse((await daemon.cli(["execution", "ls", "--sandbox-id", sandboxId!, "--all", "--json"])).stdout) as { execution_id: string }[];
  assert.equal(listed.length, 1);
  const inspected = await daemon.cli(["execution", "inspect", listed[0]!.execution_id, "--json"]);
  assert.equal(inspected.code, 0, inspected.stderr);
  return { traceId, sandboxId: sandboxId!, inspected: JSON.parse(inspected.stdout) };
}

function attribute(span: OtlpSpan, key: string): unknown {
  const value = span.attributes?.find((a) => a.key === key)?.value;
  return value && Object.values(value)[0];
}

test("exec's trace id reaches the execution's span, inspect, its timings file and the OTLP collector", async (t) => {
  const receiver = await otlpReceiver(t);
  const daemon = await startTestDaemon(t, {
    config: [
      "observability:",
      "  enabled: true",
      "  logs: { format: text }",
      `  otlp: { endpoint: "${receiver.endpoint}", protocol: http/json }`,
      `  traces: { sampling: 1, url_template: "${TRACE_URL_TEMPLATE}" }`,
      "",
    ].join("\n"),
  });
  await ensureBaseImage(daemon);
  const { traceId, sandboxId, inspected } = await execAndInspect(daemon);

  assert.equal(inspected.trace_id, traceId);
  assert.equal(inspected.trace_url, `https://tempo.example/trace/${traceId}`);
  const timings = inspected.timings_ms;
  assert.ok(timings.command > 0 && timings.total >= timings.command, JSON.stringify(timings));
  assert.ok(timings.ready > 0 && timings.rootfs_prep > 0, JSON.stringify(timings));

  const file = JSON.parse(readFileSync(join(inspected.artifacts_dir, "execution-observability.json"), "utf8"));
  assert.equal(file.execution_id, inspected.execution_id);
  assert.equal(file.sandbox_id, sandboxId);
  assert.equal(file.trace_id, traceId);
  assert.deepEqual(Object.keys(file.timings_ms), ["rootfs_prep", "network_setup", "ready", "command", "total"]);
  assert.ok(file.timings_ms.command > 0 && file.timings_ms.total >= file.timings_ms.command, JSON.stringify(file.timings_ms));

  const refused = await daemon.cli(["exec", "--", "sh", "-c", "curl -sS -o /dev/null -w '%{http_code}' $CLEANROOM_GATEWAY_URL/fetch/denied.test/x"]);
  assert.equal(refused.stdout, "403", refused.stderr);

  await daemon.stop(); // a closing daemon flushes its spans and metrics
  const gatewaySpan = receiver.spans().find((span) => span.name === "cleanroom.gateway.fetch.request");
  assert.ok(gatewaySpan, `no cleanroom.gateway.fetch.request span among ${receiver.spans().map((s) => s.name).join(", ")}`);
  assert.equal(attribute(gatewaySpan, "reason_code"), "host_not_allowed");
  const run = receiver.spans().find((span) => span.name === "cleanroom.execution.run");
  assert.ok(run, `no cleanroom.execution.run span among ${receiver.spans().map((s) => s.name).join(", ")}`);
  assert.equal(run.traceId, traceId);
  assert.match(run.parentSpanId ?? "", /^[0-9a-f]{16}$/);
  assert.equal(attribute(run, "execution_id"), inspected.execution_id);
  assert.equal(attribute(run, "sandbox_id"), sandboxId);
  assert.ok(receiver.spans().some((span) => span.name === "cleanroom.sandbox.create"));
  const metrics = receiver.metricNames();
  assert.ok(metrics.includes("cleanroom_sandbox_create_duration_seconds"), metrics.join(", "));
  assert.ok(metrics.includes("cleanroom_execution_total"), metrics.join(", "));
  assert.ok(metrics.includes("cleanroom_gateway_requests_total"), metrics.join(", "));
});

test("without observability enabled nothing is exported, and executions still carry the caller's trace id", async (t) => {
  const receiver = await otlpReceiver(t);
  const daemon = await startTestDaemon(t, { config: `observability:\n  enabled: false\n  otlp: { endpoint: "${receiver.endpoint}", protocol: http/json }\n` });
  await ensureBaseImage(daemon);
  const { traceId, inspected } = await execAndInspect(daemon);
  assert.equal(inspected.trace_id, traceId);
  assert.equal(inspected.trace_url, "");
  assert.ok(inspected.timings_ms.total >= inspected.timings_ms.command);
  await daemon.stop();
  assert.deepEqual(receiver.requests, []);
});

test("serve --pprof-listen serves a heap snapshot and a CPU profile on loopback", async (t) => {
  const [apiPort, pprofPort] = [await freePort(), await freePort()];
  await startTestDaemon(t, { listen: { host: `http://127.0.0.1:${apiPort}`, args: ["--pprof-listen", `127.0.0.1:${pprofPort}`] } });
  const heap = await fetch(`http://127.0.0.1:${pprofPort}/debug/heap-snapshot`);
  assert.equal(heap.status, 200);
  assert.ok((JSON.parse(await heap.text()) as { nodes: number[] }).nodes.length > 0);
  const cpu = await fetch(`http://127.0.0.1:${pprofPort}/debug/cpu-profile?seconds=1`);
  assert.equal(cpu.status, 200);
  assert.ok(((await cpu.json()) as { nodes: unknown[] }).nodes.length > 0);
});

test("serve --pprof-listen beyond loopback is refused before the daemon starts", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "cleanroom-pprof-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const env = { ...process.env, CLEANROOM_STATE_DIR: join(dir, "state"), CLEANROOM_RUN_DIR: join(dir, "run"), XDG_CONFIG_HOME: join(dir, "config") };
  const result = await runCli(["serve", "--listen", `unix://${join(dir, "api.sock")}`, "--pprof-listen", "0.0.0.0:6060"], env, undefined, 30_000);
  assert.notEqual(result.code, 0);
  assert.match(result.stderr, /--pprof-listen 0\.0\.0\.0:6060: the profiling server listens on loopback only/);
});
