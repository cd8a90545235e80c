import assert from "node:assert/strict";
import { test } from "node:test";
import { escapedWrites } from "../../src/cache/index.ts";

const scan = (entries: Record<string, string>) => ({ entries: new Map(Object.entries(entries)), truncated: false });
const outputs = ["/workspace/node_modules", "/root/.npm"];

test("writes inside outputs and scratch space are fine, including the directories copied up above them", () => {
  const before = scan({ "/workspace": "d", "/workspace/package.json": "f:1" });
  const after = scan({
    "/workspace": "d", "/workspace/package.json": "f:1", "/workspace/node_modules": "d", "/workspace/node_modules/a.js": "f:2",
    "/root": "d", "/root/.npm": "d", "/root/.npm/_logs/x.log": "f:3", "/tmp/build": "d", "/tmp/build/o": "f:4",
  });
  assert.deepEqual(escapedWrites(before, after, outputs), { paths: [], count: 0 });
});

test("new, changed and deleted files outside outputs, and new empty directories, are escaped writes", () => {
  const before = scan({ "/workspace": "d", "/workspace/package.json": "f:1", "/etc": "d", "/etc/old": "f:5" });
  const after = scan({
    "/workspace": "d", "/workspace/package.json": "f:changed", "/etc": "d", "/etc/new": "f:6", "/etc/shadow": "w:0",
    "/opt": "d", "/opt/empty": "d", "/srv": "d", "/srv/tree": "d", "/srv/tree/file": "f:7",
  });
  assert.deepEqual(escapedWrites(before, after, outputs), {
    paths: ["/etc/new", "/etc/old", "/etc/shadow", "/opt/empty", "/srv/tree/file", "/workspace/package.json"],
    count: 6,
  });
});

test("an output's sibling with a shared prefix is not inside the output", () => {
  const after = scan({ "/workspace": "d", "/workspace/node_modules_old": "d", "/workspace/node_modules_old/x": "f:1" });
  assert.deepEqual(escapedWrites(scan({}), after, outputs).paths, ["/workspace/node_modules_old/x"]);
});
