import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { StateStore } from "../../src/sandbox/store.ts";
import type { SandboxRecord } from "../../src/sandbox/index.ts";

function sandbox(id: string, status: SandboxRecord["status"], createdAt: string): SandboxRecord {
  return {
    id, status, backend: "linux", imageRef: "img", imageDigest: "", statusReason: "", createdAt, updatedAt: createdAt,
    resources: { vcpus: 1, memoryMiB: 512, pidsLimit: 256 }, policyHash: "", dangerouslyAllowAll: false, labels: {},
  };
}

function tempStore(t: { after(fn: () => void): void }): { path: string; store: StateStore } {
  const dir = mkdtempSync(join(tmpdir(), "store-"));
  const path = join(dir, "cleanroom.db");
  const store = new StateStore(path);
  t.after(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { path, store };
}

test("sandbox records survive reopening the database and filter by status in creation order", (t) => {
  const { path, store } = tempStore(t);
  store.putSandbox(sandbox("bbbbbbbbbbbb", "READY", "2026-01-02T00:00:00Z"));
  store.putSandbox(sandbox("aaaaaaaaaaaa", "STOPPED", "2026-01-01T00:00:00Z"));
  store.putSandbox({ ...sandbox("bbbbbbbbbbbb", "FAILED", "2026-01-02T00:00:00Z"), statusReason: "gone" });
  const reopened = new StateStore(path);
  t.after(() => reopened.close());
  assert.deepEqual(reopened.listSandboxes().map((s) => s.id), ["aaaaaaaaaaaa", "bbbbbbbbbbbb"]);
  assert.deepEqual(reopened.listSandboxes(["FAILED"]).map((s) => [s.id, s.statusReason]), [["bbbbbbbbbbbb", "gone"]]);
  assert.equal(reopened.getSandbox("cccccccccccc"), undefined);
});

test("events are numbered in order and read after a sequence or as the newest few", (t) => {
  const { store } = tempStore(t);
  for (let i = 0; i < 5; i++) store.addEvent({ sandboxId: "s1", time: "t", type: "status", message: `m${i}`, reasonCode: "", attributes: {} });
  store.addEvent({ sandboxId: "s2", time: "t", type: "status", message: "other", reasonCode: "", attributes: {} });
  const all = store.listEvents("s1");
  assert.deepEqual(all.map((e) => e.message), ["m0", "m1", "m2", "m3", "m4"]);
  assert.deepEqual(store.listEvents("s1", all[2]!.sequence).map((e) => e.message), ["m3", "m4"]);
  assert.deepEqual(store.recentEvents("s1", 2).map((e) => e.message), ["m3", "m4"]);
});
