import { test } from "node:test";
import assert from "node:assert/strict";
import { parseTraceParent, traceUrl } from "../../src/server/trace-context.ts";
import { newTraceContext } from "../../src/sdk/index.ts";

test("a traceparent header gives the caller's trace and span", () => {
  assert.deepEqual(parseTraceParent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"), { traceId: "0af7651916cd43dd8448eb211c80319c", spanId: "b7ad6b7169203331", sampled: true });
  assert.equal(parseTraceParent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00")?.sampled, false);
});

test("a malformed or all-zero traceparent is no trace", () => {
  for (const header of [null, "", "garbage", "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "00-00000000000000000000000000000000-b7ad6b7169203331-01", "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01", "00-0af7651916cd43dd8448eb211c8031-b7ad6b7169203331-01"]) {
    assert.equal(parseTraceParent(header), undefined, String(header));
  }
});

test("the SDK's new trace context is a traceparent the daemon reads back", () => {
  const context = newTraceContext();
  assert.match(context.traceId, /^[0-9a-f]{32}$/);
  assert.match(context.spanId, /^[0-9a-f]{16}$/);
  assert.deepEqual(parseTraceParent(context.traceparent), { traceId: context.traceId, spanId: context.spanId, sampled: true });
});

test("the trace URL fills {trace_id} in the template, and is empty without one", () => {
  assert.equal(traceUrl("https://tempo.example/trace/{trace_id}", "abc"), "https://tempo.example/trace/abc");
  assert.equal(traceUrl(undefined, "abc"), "");
});
