import { test, before, after, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, statSync, symlinkSync, writeFileSync,
} from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { Header } from "tar";
import { isCleanroomError, type ReasonCode } from "../../src/errors/index.ts";
import { SandboxFiles, type AgentClient } from "../../src/agent-protocol/index.ts";
import { buildAgent, startAgent, removeDir, readAll, waitUntil, type RunningAgent } from "./agent-fixture.ts";

let agentDir = "";
let agent: RunningAgent;
let client: AgentClient;
let files: SandboxFiles;

before(async () => {
  const built = await buildAgent();
  agentDir = built.dir;
  agent = await startAgent(built.binary, agentDir);
  client = await agent.connect();
  // The agent runs on the host here, so the "sandbox" paths are temp dirs and the helper is the built binary.
  files = new SandboxFiles(client, { agentPath: built.binary });
});

after(async () => {
  client?.close();
  await agent?.stop();
  if (agentDir) await removeDir(agentDir);
});

/** A fresh directory standing in for a sandbox path, removed when the test ends. */
async function scratch(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "cleanroom-files-"));
  t.after(() => removeDir(dir));
  return dir;
}

function failsWith(code: ReasonCode, text?: string): (err: unknown) => boolean {
  return (err) => {
    assert.ok(isCleanroomError(err, code), `expected ${code}, got ${String(err)}`);
    if (text) assert.match(err.message, new RegExp(text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")));
    return true;
  };
}

function sha256(data: Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Helpers the agent is still running for a path (their argv carries the request JSON). */
function helpersFor(path: string): number[] {
  return readdirSync("/proc").filter((name) => /^\d+$/.test(name)).filter((pid) => {
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
      return argv[1] === "file" && (argv[3] ?? "").includes(path);
    } catch {
      return false;
    }
  }).map(Number);
}

interface TarSpec {
  path: string;
  type?: "File" | "Directory" | "SymbolicLink" | "Link";
  data?: string;
  linkpath?: string;
}

/** A raw tar (node-tar's header encoder), so tests can write entries a careful archiver never would. */
function tarOf(entries: TarSpec[]): Buffer {
  const blocks: Buffer[] = [];
  for (const e of entries) {
    const type = e.type ?? "File";
    const data = Buffer.from(e.data ?? "");
    const header = new Header({
      path: e.path, type, mode: type === "Directory" ? 0o755 : 0o644, size: type === "File" ? data.length : 0,
      mtime: new Date(1_700_000_000_000), linkpath: e.linkpath, uid: 0, gid: 0, uname: "", gname: "",
    });
    header.encode();
    blocks.push(header.block!, data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

test("stat reports type, mode, size, owner and the nanosecond mtime of a file, a symlink and a directory", async (t) => {
  const dir = await scratch(t);
  const file = join(dir, "f");
  writeFileSync(file, "hello");
  chmodSync(file, 0o640);
  execFileSync("touch", ["-d", "@1700000000.123456789", file]);
  symlinkSync("f", join(dir, "l"));
  const { uid, gid } = statSync(file);

  assert.deepEqual(await files.stat(file), {
    path: file, type: "file", mode: 0o640, size: 5, mtimeMs: 1_700_000_000_123, mtimeSec: 1_700_000_000, mtimeNsec: 123_456_789, uid, gid,
  });
  const link = await files.stat(join(dir, "l"));
  assert.equal(link.type, "symlink");
  assert.equal(link.linkTarget, "f");
  const followed = await files.stat(join(dir, "l"), { followSymlinks: true });
  assert.deepEqual([followed.path, followed.type, followed.size, followed.linkTarget], [join(dir, "l"), "file", 5, undefined]);
  assert.equal((await files.stat(dir)).type, "dir");
});

test("the helper's error codes become reason codes: missing path, relative path", async (t) => {
  const dir = await scratch(t);
  await assert.rejects(files.stat(join(dir, "missing")), failsWith("not_found", join(dir, "missing")));
  await assert.rejects(files.stat("relative/path"), failsWith("invalid_argument"));
  await assert.rejects(files.read(dir, { maxBytes: 10 }), failsWith("failed_precondition"));
});

test("walk lists the tree depth first without following symlinks, and says when it stopped at maxEntries", async (t) => {
  const dir = await scratch(t);
  mkdirSync(join(dir, "a"));
  writeFileSync(join(dir, "a", "x"), "x");
  writeFileSync(join(dir, "b"), "");
  writeFileSync(join(dir, "c"), "");
  symlinkSync("a", join(dir, "s"));

  const all = await files.walk(dir, { maxEntries: 100 });
  assert.deepEqual(all.entries.map((e) => `${e.path}:${e.type}`), ["a:dir", "a/x:file", "b:file", "c:file", "s:symlink"]);
  assert.equal(all.truncated, false);
  const cut = await files.walk(dir, { maxEntries: 2 });
  assert.deepEqual([cut.entries.map((e) => e.path), cut.truncated], [["a", "a/x"], true]);
  const shallow = await files.walk(dir, { maxDepth: 1, maxEntries: 100 });
  assert.deepEqual(shallow.entries.map((e) => e.path), ["a", "b", "c", "s"]);
});

test("a 20 MiB file is read as a stream, intact", async (t) => {
  const dir = await scratch(t);
  const data = randomBytes(20 * 1024 * 1024);
  writeFileSync(join(dir, "big"), data);
  const { entry, content } = await files.read(join(dir, "big"), { maxBytes: 64 * 1024 * 1024 });
  assert.deepEqual([entry.size, entry.truncated], [data.length, false]);
  assert.equal(sha256(await readAll(content)), sha256(data));
});

test("a ranged read returns the bytes from offset, at most maxBytes, and says it was cut", async (t) => {
  const dir = await scratch(t);
  writeFileSync(join(dir, "f"), "0123456789");
  const ranged = await files.read(join(dir, "f"), { offset: 5, maxBytes: 3 });
  assert.deepEqual([ranged.entry.truncated, (await readAll(ranged.content)).toString()], [true, "567"]);
  const past = await files.read(join(dir, "f"), { offset: 20, maxBytes: 3 });
  assert.deepEqual([past.entry.truncated, (await readAll(past.content)).length], [false, 0]);
});

test("destroying the content of a read early stops the helper", async (t) => {
  const dir = await scratch(t);
  const path = join(dir, "big");
  writeFileSync(path, randomBytes(16 * 1024 * 1024));
  const { content } = await files.read(path, { maxBytes: 64 * 1024 * 1024 });
  await new Promise((resolve) => content.once("data", resolve));
  content.destroy();
  assert.ok(await waitUntil(() => helpersFor(path).length === 0, 5000), "the read helper is still running");
  assert.equal((await files.stat(path)).size, 16 * 1024 * 1024, "the connection still works");
});

test("write sets mode and mtime exactly, creates parents 0755, and reports the written file", async (t) => {
  const dir = await scratch(t);
  const path = join(dir, "sub", "deep", "tool");
  const entry = await files.write(path, Buffer.from("#!/bin/sh\n"), {
    mode: 0o755, mtimeSec: 1_600_000_000, mtimeNsec: 987_654_321, createParents: true, maxBytes: 1024,
  });
  assert.deepEqual([entry.path, entry.type, entry.mode, entry.size, entry.mtimeSec, entry.mtimeNsec], [path, "file", 0o755, 10, 1_600_000_000, 987_654_321]);
  const st = lstatSync(path, { bigint: true });
  assert.equal(st.mode & 0o7777n, 0o755n);
  assert.equal(st.mtimeNs, 1_600_000_000_987_654_321n);
  assert.equal(statSync(join(dir, "sub")).mode & 0o7777, 0o755);
  assert.equal(readFileSync(path, "utf8"), "#!/bin/sh\n");
});

test("write takes a stream, and needs createParents for a missing parent", async (t) => {
  const dir = await scratch(t);
  const chunks = Array.from({ length: 50 }, (_, i) => Buffer.alloc(100_000, i));
  await files.write(join(dir, "streamed"), Readable.from(chunks), { maxBytes: 10_000_000 });
  assert.equal(sha256(readFileSync(join(dir, "streamed"))), sha256(Buffer.concat(chunks)));
  await assert.rejects(files.write(join(dir, "no", "such", "f"), Buffer.from("x"), { maxBytes: 10 }), failsWith("not_found"));
});

test("writing over a symlink replaces the link and leaves its target alone", async (t) => {
  const dir = await scratch(t);
  const outside = await scratch(t);
  writeFileSync(join(outside, "target"), "original");
  symlinkSync(join(outside, "target"), join(dir, "link"));
  await files.write(join(dir, "link"), Buffer.from("new"), { maxBytes: 10 });
  assert.equal(readFileSync(join(outside, "target"), "utf8"), "original");
  assert.ok(lstatSync(join(dir, "link")).isFile());
  assert.equal(readFileSync(join(dir, "link"), "utf8"), "new");
});

test("write over maxBytes is resource_exhausted, and a failing input rejects the write; neither leaves anything", async (t) => {
  const dir = await scratch(t);
  await assert.rejects(files.write(join(dir, "f"), Buffer.alloc(100), { maxBytes: 99 }), failsWith("resource_exhausted"));
  const failing = new Readable({ read() {} });
  failing.push(Buffer.alloc(100_000, 1));
  setTimeout(() => failing.destroy(new Error("upload interrupted")), 50);
  await assert.rejects(files.write(join(dir, "g"), failing, { maxBytes: 1_000_000 }), /upload interrupted/);
  assert.deepEqual(readdirSync(dir), []);
});

test("remove deletes a tree when recursive, refuses a non-empty directory otherwise, and reports a missing path", async (t) => {
  const dir = await scratch(t);
  mkdirSync(join(dir, "tree", "sub"), { recursive: true });
  writeFileSync(join(dir, "tree", "sub", "f"), "x");
  await assert.rejects(files.remove(join(dir, "tree")), failsWith("failed_precondition"));
  assert.equal(await files.remove(join(dir, "tree"), { recursive: true }), true);
  assert.equal(existsSync(join(dir, "tree")), false);
  assert.equal(await files.remove(join(dir, "tree")), false);
});

test("archive piped into extract reproduces a tree: symlink, empty dir, 0600 file with a nanosecond mtime", async (t) => {
  const src = await scratch(t);
  const dst = await scratch(t);
  mkdirSync(join(src, "tree", "empty"), { recursive: true });
  mkdirSync(join(src, "tree", "sub"));
  writeFileSync(join(src, "tree", "sub", "file"), "content");
  writeFileSync(join(src, "tree", "secret"), "s3cret", { mode: 0o600 });
  chmodSync(join(src, "tree", "secret"), 0o600);
  execFileSync("touch", ["-d", "@1650000000.000000042", join(src, "tree", "secret")]);
  symlinkSync("secret", join(src, "tree", "link"));

  const tar = files.archive(src, ["tree"], { maxBytes: 1024 * 1024 });
  const result = await files.extract(dst, tar, { maxBytes: 1024 * 1024, maxEntries: 100 });
  assert.deepEqual(result, { entries: 6, bytes: "content".length + "s3cret".length });
  const secret = lstatSync(join(dst, "tree", "secret"), { bigint: true });
  assert.equal(secret.mode & 0o7777n, 0o600n);
  assert.equal(secret.mtimeNs, 1_650_000_000_000_000_042n);
  assert.equal(readFileSync(join(dst, "tree", "secret"), "utf8"), "s3cret");
  assert.equal(readlinkSync(join(dst, "tree", "link")), "secret");
  assert.deepEqual(readdirSync(join(dst, "tree", "empty")), []);
  assert.equal(readFileSync(join(dst, "tree", "sub", "file"), "utf8"), "content");
});

test("extract refuses an entry that climbs out with ../", async (t) => {
  const parent = await scratch(t);
  const dir = join(parent, "target");
  mkdirSync(dir);
  const tar = Readable.from([tarOf([{ path: "../escape", data: "x" }])]);
  await assert.rejects(files.extract(dir, tar, { maxBytes: 1000, maxEntries: 10 }), failsWith("invalid_argument", "../escape"));
  assert.equal(existsSync(join(parent, "escape")), false);
});

test("extract refuses to write through a symlink that points outside the target", async (t) => {
  const dir = await scratch(t);
  const outside = await scratch(t);
  symlinkSync(outside, join(dir, "link"));
  const tar = Readable.from([tarOf([{ path: "link/evil", data: "x" }, { path: "link/sub/", type: "Directory" }])]);
  await assert.rejects(files.extract(dir, tar, { maxBytes: 1000, maxEntries: 10 }), failsWith("failed_precondition"));
  assert.deepEqual(readdirSync(outside), []);
});

test("archive and extract enforce maxBytes with resource_exhausted", async (t) => {
  const dir = await scratch(t);
  writeFileSync(join(dir, "f"), Buffer.alloc(1000));
  await assert.rejects(readAll(files.archive(dir, ["."], { maxBytes: 999 })), failsWith("resource_exhausted"));
  const tar = Readable.from([tarOf([{ path: "a", data: "12345" }, { path: "b", data: "67890" }])]);
  await assert.rejects(files.extract(dir, tar, { maxBytes: 9, maxEntries: 10 }), failsWith("resource_exhausted"));
});
