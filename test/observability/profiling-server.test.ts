import { test } from "node:test";
import assert from "node:assert/strict";
import { silentLogger, startProfilingServer } from "../../src/observability/index.ts";
import { parseProfilingListen } from "../../src/observability/profiling-server.ts";

test("the profiling server listens on loopback addresses only", () => {
  assert.deepEqual(parseProfilingListen("127.0.0.1:6060"), { host: "127.0.0.1", port: 6060 });
  assert.deepEqual(parseProfilingListen("[::1]:6060"), { host: "::1", port: 6060 });
  assert.deepEqual(parseProfilingListen("localhost:0"), { host: "localhost", port: 0 });
  for (const refused of ["0.0.0.0:6060", "10.0.0.5:6060", "[::]:6060", "example.com:6060"]) {
    assert.throws(() => parseProfilingListen(refused), /loopback only/, refused);
  }
  assert.throws(() => parseProfilingListen("6060"), /expected HOST:PORT/);
});

test("it serves a heap snapshot and a CPU profile, and refuses a profile longer than 60 s", async (t) => {
  const server = await startProfilingServer("127.0.0.1:0", silentLogger());
  t.after(() => server.close());
  const heap = await fetch(`${server.url}/debug/heap-snapshot`);
  assert.equal(heap.status, 200);
  const snapshot = JSON.parse(await heap.text()) as { snapshot: { meta: unknown } };
  assert.ok(snapshot.snapshot.meta);
  const cpu = await fetch(`${server.url}/debug/cpu-profile?seconds=1`);
  assert.equal(cpu.status, 200);
  const profile = (await cpu.json()) as { nodes: unknown[]; startTime: number; endTime: number };
  assert.ok(profile.nodes.length > 0 && profile.endTime > profile.startTime);
  assert.equal((await fetch(`${server.url}/debug/cpu-profile?seconds=61`)).status, 400);
  assert.equal((await fetch(`${server.url}/nothing`)).status, 404);
});
