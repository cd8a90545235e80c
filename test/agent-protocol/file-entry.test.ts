import { test } from "node:test";
import assert from "node:assert/strict";
import { isCleanroomError } from "../../src/errors/index.ts";
import { helperFailure, parseEntryLine, parseReadHeader, parseWalkLine } from "../../src/agent-protocol/file-entry.ts";

const good = { path: "/f", type: "file", mode: 0o644, size: 3, mtimeSec: 1, mtimeNsec: 2_000_000, uid: 0, gid: 0 };
const line = (obj: unknown) => Buffer.from(JSON.stringify(obj));
const isProtocolError = (err: unknown) => isCleanroomError(err, "agent_protocol_error");

test("a well-formed entry parses, with mtimeMs from seconds and nanoseconds", () => {
  assert.deepEqual(parseEntryLine(line(good), "/f"), { ...good, mtimeMs: 1002 });
});

test("entries with wrong numbers, types, paths or fields are refused", () => {
  const hostile: Record<string, unknown>[] = [
    { ...good, size: -1 },
    { ...good, size: 1.5 },
    { ...good, size: "3" },
    { ...good, size: 2 ** 60 },
    { ...good, mode: 0o10000 },
    { ...good, mtimeNsec: 1_000_000_000 },
    { ...good, uid: -1 },
    { ...good, type: "socket" },
    { ...good, path: "/f\0" },
    { ...good, linkTarget: "x" },
    { ...good, type: "symlink" },
    { ...good, extra: true },
    { ...good, path: "/other" },
  ];
  for (const obj of hostile) assert.throws(() => parseEntryLine(line(obj), "/f"), isProtocolError, JSON.stringify(obj));
  assert.throws(() => parseEntryLine(Buffer.from("not json"), "/f"), isProtocolError);
  assert.throws(() => parseEntryLine(Buffer.from("[1]"), "/f"), isProtocolError);
});

test("read's header may say truncated, and must describe a regular file", () => {
  assert.equal(parseReadHeader(line({ ...good, truncated: true }), "/f").truncated, true);
  assert.equal(parseReadHeader(line(good), "/f").truncated, false);
  assert.throws(() => parseReadHeader(line({ ...good, truncated: false }), "/f"), isProtocolError);
  assert.throws(() => parseReadHeader(line({ ...good, type: "dir" }), "/f"), isProtocolError);
});

test("walk lines are clean relative paths or exactly the truncation marker", () => {
  assert.equal(parseWalkLine(line({ truncated: true })), "truncated");
  assert.equal((parseWalkLine(line({ ...good, path: "a/b" })) as { path: string }).path, "a/b");
  for (const path of ["/abs", "../up", "a//b", "a/./b", "a/"]) {
    assert.throws(() => parseWalkLine(line({ ...good, path })), isProtocolError, path);
  }
  assert.throws(() => parseWalkLine(line({ truncated: true, more: 1 })), isProtocolError);
});

test("the helper's error line maps known codes, turns unknown ones into internal, and cleans the message", () => {
  const stderr = (obj: unknown) => Buffer.from(`${JSON.stringify(obj)}\n`);
  const notFound = helperFailure("stat", { exitCode: 1 }, stderr({ code: "not_found", message: "stat /x: no such file" }));
  assert.deepEqual([notFound.code, notFound.message], ["not_found", "sandbox file stat: stat /x: no such file"]);

  const unknown = helperFailure("stat", { exitCode: 1 }, stderr({ code: "policy_invalid", message: "x" }));
  assert.equal(unknown.code, "internal");

  const dirty = helperFailure("stat", { exitCode: 1 }, stderr({ code: "internal", message: `a\u001b[31mb\u202ec${"z".repeat(1000)}` }));
  assert.doesNotMatch(dirty.message, /[\u001b\u202e]/);
  assert.ok(dirty.message.length < 600);

  const killed = helperFailure("read", { exitCode: 137, signal: "SIGKILL" }, Buffer.alloc(0));
  assert.deepEqual([killed.code, killed.message], ["internal", "sandbox file read: the file helper was killed by SIGKILL"]);
  const notStarted = helperFailure("read", { exitCode: 127 }, Buffer.from('cleanroom-agent: exec "/x": not found\n'));
  assert.match(notStarted.message, /exited with 127: cleanroom-agent: exec/);
});
