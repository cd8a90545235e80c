import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { OutputLogWriter, readOutputLog, tailOutputLog, type OutputChunk } from "../../src/sandbox/output-log.ts";

function tempLog(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), "output-log-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, "output.log");
}

async function collect(source: AsyncIterable<OutputChunk>): Promise<string[]> {
  const out: string[] = [];
  for await (const chunk of source) out.push(`${chunk.stream}:${Buffer.from(chunk.data).toString()}`);
  return out;
}

test("stdout and stderr replay interleaved in the order they were written", async (t) => {
  const path = tempLog(t);
  const log = await OutputLogWriter.create(path);
  await log.append("stdout", Buffer.from("one"));
  await log.append("stderr", Buffer.from("two"));
  await log.append("stdout", Buffer.from("three"));
  await log.close();
  assert.deepEqual(await collect(readOutputLog(path)), ["stdout:one", "stderr:two", "stdout:three"]);
});

test("a follower sees the backlog, then live writes, and ends when the writer closes", async (t) => {
  const path = tempLog(t);
  const log = await OutputLogWriter.create(path);
  await log.append("stdout", Buffer.from("before"));
  const following = collect(readOutputLog(path, log));
  await new Promise((r) => setTimeout(r, 20));
  await log.append("stderr", Buffer.from("during"));
  await log.append("stdout", Buffer.from("late"));
  await log.close();
  assert.deepEqual(await following, ["stdout:before", "stderr:during", "stdout:late"]);
});

test("a follower that aborts stops waiting", async (t) => {
  const path = tempLog(t);
  const log = await OutputLogWriter.create(path);
  const abort = new AbortController();
  const following = collect(readOutputLog(path, log, abort.signal));
  setTimeout(() => abort.abort(), 20);
  await assert.rejects(following, { name: "AbortError" });
  await log.close();
});

test("tail keeps the last bytes of each stream", async (t) => {
  const path = tempLog(t);
  const log = await OutputLogWriter.create(path);
  for (let i = 0; i < 100; i++) await log.append("stdout", Buffer.from(`line ${i}\n`));
  await log.append("stderr", Buffer.from("warning\n"));
  await log.close();
  const tail = await tailOutputLog(path, 16);
  assert.equal(tail.stdout.toString(), "line 98\nline 99\n");
  assert.equal(tail.stderr.toString(), "warning\n");
});

test("a damaged log is reported, not misread", async (t) => {
  const path = tempLog(t);
  writeFileSync(path, Buffer.from([9, 0, 0, 0, 1, 65]));
  await assert.rejects(collect(readOutputLog(path)), /damaged/);
});
