import { test } from "node:test";
import assert from "node:assert/strict";
import { mergeEnv } from "../../src/sandbox/execution-runner.ts";

test("request env overrides the image env by key and keeps the rest in order", () => {
  assert.deepEqual(mergeEnv(["PATH=/usr/bin", "LANG=C.UTF-8"], ["PATH=/opt/bin", "CI=true"]), ["PATH=/opt/bin", "LANG=C.UTF-8", "CI=true"]);
  assert.deepEqual(mergeEnv(["BROKEN", "=x", "A=1"], []), ["A=1"]);
});
