import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test, type TestContext } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { followLog, lastLogLines, LineSplitter, RotatingLog } from "../../src/service/rotating-log.ts";

function logDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), "cleanroom-log-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const line = (i: number) => `line ${String(i).padStart(4, "0")} ${"x".repeat(40)}\n`; // 51 bytes

test("the log rotates before it passes its size limit and keeps exactly one old file", (t) => {
  const path = join(logDir(t), "daemon.log");
  const log = new RotatingLog(path, 1000);
  for (let i = 0; i < 100; i++) log.append(line(i));
  log.close();
  assert.ok(statSync(path).size <= 1000);
  assert.ok(statSync(`${path}.1`).size <= 1000);
  assert.equal(existsSync(`${path}.2`), false);
  assert.ok(readFileSync(path, "utf8").endsWith(line(99)));
  assert.ok(readFileSync(`${path}.1`, "utf8").split("\n").filter(Boolean).every((l) => l.startsWith("line ")), "no line is cut in two");
});

test("a log reopened after a restart keeps counting its size", (t) => {
  const path = join(logDir(t), "daemon.log");
  const first = new RotatingLog(path, 1000);
  for (let i = 0; i < 15; i++) first.append(line(i));
  first.close();
  const second = new RotatingLog(path, 1000);
  for (let i = 15; i < 25; i++) second.append(line(i));
  second.close();
  assert.ok(statSync(path).size <= 1000);
  assert.ok(existsSync(`${path}.1`));
});

test("the last lines reach into the rotated file when the current one holds fewer", (t) => {
  const path = join(logDir(t), "daemon.log");
  const log = new RotatingLog(path, 1000);
  for (let i = 0; i < 22; i++) log.append(line(i)); // 19 lines fit in 1000 bytes: lines 19-21 are in the current file
  log.close();
  assert.deepEqual(lastLogLines(path, 5), [17, 18, 19, 20, 21].map((i) => line(i).trimEnd()));
  assert.deepEqual(lastLogLines(path, 2), [20, 21].map((i) => line(i).trimEnd()));
  assert.deepEqual(lastLogLines(path, 0), []);
  assert.deepEqual(lastLogLines(join(logDir(t), "none.log"), 10), []);
});

test("following the log prints what is appended, and carries on into the new file after a rotation", async (t) => {
  const path = join(logDir(t), "daemon.log");
  const log = new RotatingLog(path, 1000);
  t.after(() => log.close());
  log.append("before following\n");
  const seen: string[] = [];
  const stop = new AbortController();
  const following = followLog(path, (chunk) => seen.push(chunk.toString()), stop.signal, 20);
  await sleep(100);
  for (let i = 0; i < 30; i++) log.append(line(i)); // rotates once, mid-way
  await waitFor(() => seen.join("").includes(line(29)));
  stop.abort();
  await following;
  const text = seen.join("");
  assert.equal(text.includes("before following"), false, "only what came after");
  assert.equal(text, Array.from({ length: 30 }, (_, i) => line(i)).join(""));
});

test("lines of two streams are written whole, and an endless line is written in pieces", () => {
  const written: string[] = [];
  const out = new LineSplitter((l) => written.push(l.toString()), 16);
  const err = new LineSplitter((l) => written.push(l.toString()), 16);
  out.push(Buffer.from("out one\nout t"));
  err.push(Buffer.from("err one\n"));
  out.push(Buffer.from("wo\n"));
  err.push(Buffer.from("e".repeat(20)));
  out.push(Buffer.from("unfinished"));
  out.flush();
  assert.deepEqual(written, ["out one\n", "err one\n", "out two\n", `${"e".repeat(20)}\n`, "unfinished\n"]);
});

async function waitFor(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await sleep(10);
  }
}
