import { test } from "node:test";
import assert from "node:assert/strict";
import { formatLogLine } from "../../src/observability/text-log.ts";

test("a JSON log event becomes one text line with its ids as key=value", () => {
  const line = JSON.stringify({ level: 30, time: Date.UTC(2026, 0, 2, 3, 4, 5), service: "cleanroom", pid: 1, hostname: "h", trace_id: "0af7651916cd43dd8448eb211c80319c", exit_code: 0, reason: "two words", msg: "execution finished" });
  assert.equal(formatLogLine(line), '2026-01-02T03:04:05.000Z INFO  execution finished trace_id=0af7651916cd43dd8448eb211c80319c exit_code=0 reason="two words"\n');
});

test("an error is shown by its message, and a line that is not JSON passes through", () => {
  const line = JSON.stringify({ level: 50, time: 0, err: { type: "Error", message: "boom", stack: "…" }, reason_code: "internal", msg: "failed" });
  assert.equal(formatLogLine(line), '1970-01-01T00:00:00.000Z ERROR failed err="boom" reason_code=internal\n');
  assert.equal(formatLogLine("plain"), "plain\n");
});
