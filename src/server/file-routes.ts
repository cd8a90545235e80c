// The SandboxService file RPCs: thin adapters from Connect messages to SandboxFiles. Large transfers stream in
// both directions with backpressure (the agent's window on one side, the HTTP connection on the other), so the
// daemon holds at most a chunk or two of any file in memory.
import { Readable } from "node:stream";
import type { ServiceImpl } from "@connectrpc/connect";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { SandboxPathEntry } from "../agent-protocol/index.ts";
import type { SandboxPathEntry as EntryMessage, SandboxService } from "../api/index.ts";
import { CleanroomError } from "../errors/index.ts";
import type { SandboxSupervisor } from "../sandbox/index.ts";

const MAX_SMALL_READ_BYTES = 16 * 1024 * 1024;
const DEFAULT_SMALL_READ_BYTES = 1024 * 1024;
const DEFAULT_WALK_ENTRIES = 100_000;
/** no single file or archive is larger than this unless the caller raises it */
const DEFAULT_TRANSFER_LIMIT_BYTES = 64 * 1024 ** 3;
const MAX_ARCHIVE_ENTRIES = 1_000_000;
/**
 * Download and archive messages carry exactly this much (the last one less): fewer, larger messages cost less than
 * the agent's frames. Not 1 MiB: protobuf-es serializes into a buffer it doubles from 128 bytes, and a 1 MiB chunk
 * with its tag and length would take a 2 MiB one. Allocated megabytes are what bring V8's next full GC closer.
 */
const CHUNK_BYTES = 1024 * 1024 - 16;

type FileMethods = Pick<ServiceImpl<typeof SandboxService>,
  | "statSandboxPath" | "walkSandboxTree" | "readSandboxFile" | "writeSandboxFile" | "removeSandboxPath"
  | "archiveSandboxPaths" | "extractSandboxArchive" | "downloadSandboxFile" | "uploadSandboxFile">;

export function fileMethods(supervisor: SandboxSupervisor): FileMethods {
  return {
    async statSandboxPath(req) {
      const files = await supervisor.files(req.sandboxId);
      return { entry: entryMessage(await files.stat(req.path, { followSymlinks: req.followSymlinks })) };
    },
    async walkSandboxTree(req) {
      const files = await supervisor.files(req.sandboxId);
      const walked = await files.walk(req.path, { maxDepth: req.maxDepth, maxEntries: req.maxEntries || DEFAULT_WALK_ENTRIES });
      return { entries: walked.entries.map(entryMessage), truncated: walked.truncated };
    },
    async readSandboxFile(req) {
      const maxBytes = Number(req.maxBytes) || DEFAULT_SMALL_READ_BYTES;
      if (maxBytes > MAX_SMALL_READ_BYTES) throw new CleanroomError("invalid_argument", `ReadSandboxFile reads at most ${MAX_SMALL_READ_BYTES} bytes; use DownloadSandboxFile`);
      const files = await supervisor.files(req.sandboxId);
      const { entry, content } = await files.read(req.path, { offset: Number(req.offset), maxBytes });
      const chunks: Buffer[] = [];
      for await (const chunk of content) chunks.push(chunk as Buffer);
      return { entry: entryMessage(entry), data: Buffer.concat(chunks), truncated: entry.truncated };
    },
    async writeSandboxFile(req) {
      if (req.data.byteLength > MAX_SMALL_READ_BYTES) throw new CleanroomError("invalid_argument", `WriteSandboxFile writes at most ${MAX_SMALL_READ_BYTES} bytes; use UploadSandboxFile`);
      const files = await supervisor.files(req.sandboxId);
      const entry = await files.write(req.path, req.data, {
        mode: req.mode || 0o644,
        ...mtimeOf(req.mtime),
        createParents: req.createParents,
        maxBytes: req.data.byteLength,
      });
      return { entry: entryMessage(entry) };
    },
    async removeSandboxPath(req) {
      const files = await supervisor.files(req.sandboxId);
      return { removed: await files.remove(req.path, { recursive: req.recursive }) };
    },
    async *archiveSandboxPaths(req, ctx) {
      const files = await supervisor.files(req.sandboxId);
      const tar = files.archive(req.dir, req.paths, { maxBytes: limitOf(req.maxBytes), maxEntries: MAX_ARCHIVE_ENTRIES });
      ctx.signal.addEventListener("abort", () => tar.destroy(), { once: true });
      for await (const chunk of coalesce(tar)) yield { chunk };
    },
    async extractSandboxArchive(requests) {
      const { header, rest } = await firstPart(requests, "ExtractSandboxArchive");
      if (header.case !== "header") throw new CleanroomError("invalid_argument", "ExtractSandboxArchive: the first message must be the header");
      const files = await supervisor.files(header.value.sandboxId);
      const result = await files.extract(header.value.dir, chunksOf(rest), { maxBytes: limitOf(header.value.maxBytes), maxEntries: MAX_ARCHIVE_ENTRIES, createDir: true });
      return { entries: BigInt(result.entries), bytes: BigInt(result.bytes) };
    },
    async *downloadSandboxFile(req, ctx) {
      const files = await supervisor.files(req.sandboxId);
      const limit = limitOf(req.maxBytes);
      // read's header is the opened file's fstat: a non-file is refused by the helper, a larger one is `truncated`
      const { entry, content } = await files.read(req.path, { maxBytes: limit });
      if (entry.truncated) {
        content.destroy();
        throw new CleanroomError("resource_exhausted", `${req.path} is ${entry.size} bytes, more than the limit of ${limit}`);
      }
      ctx.signal.addEventListener("abort", () => content.destroy(), { once: true });
      yield { part: { case: "entry", value: entryMessage(entry) } };
      for await (const chunk of coalesce(content)) yield { part: { case: "chunk", value: chunk } };
    },
    async uploadSandboxFile(requests) {
      const { header, rest } = await firstPart(requests, "UploadSandboxFile");
      if (header.case !== "header") throw new CleanroomError("invalid_argument", "UploadSandboxFile: the first message must be the header");
      const { sandboxId, path, mode, mtime, size, createParents } = header.value;
      const files = await supervisor.files(sandboxId);
      const entry = await files.write(path, chunksOf(rest), { mode: mode || 0o644, ...mtimeOf(mtime), createParents, size: Number(size), maxBytes: Number(size) });
      return { entry: entryMessage(entry) };
    },
  };
}

type Part<M> = M extends { part: infer P } ? P : never;

/** The first message of a client stream (its header) and the iterator over the rest. */
async function firstPart<M extends { part: { case: string | undefined } }>(requests: AsyncIterable<M>, rpc: string): Promise<{ header: Part<M>; rest: AsyncIterator<M> }> {
  const iterator = requests[Symbol.asyncIterator]();
  const first = await iterator.next();
  if (first.done) throw new CleanroomError("invalid_argument", `${rpc}: the stream ended before its header`);
  return { header: first.value.part as Part<M>, rest: iterator };
}

/** The chunk messages after the header as a byte stream; another header midway is refused. */
function chunksOf(rest: AsyncIterator<{ part: { case: string | undefined; value?: unknown } }>): Readable {
  return Readable.from((async function* () {
    for (let next = await rest.next(); !next.done; next = await rest.next()) {
      const part = next.value.part;
      if (part.case !== "chunk") throw new CleanroomError("invalid_argument", "only byte chunks may follow the header");
      const chunk = part.value as Uint8Array; // a view of the request bytes: taken as it is, never copied
      yield Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    }
  })());
}

/** Re-chunks a byte stream into messages of exactly CHUNK_BYTES (the last one shorter), each piece copied once. */
async function* coalesce(source: Readable): AsyncGenerator<Uint8Array> {
  let message: Buffer | undefined;
  let filled = 0;
  for await (const piece of source as AsyncIterable<Buffer>) {
    for (let offset = 0; offset < piece.length;) {
      message ??= Buffer.allocUnsafe(CHUNK_BYTES);
      const taken = piece.copy(message, filled, offset, Math.min(piece.length, offset + CHUNK_BYTES - filled));
      filled += taken;
      offset += taken;
      if (filled < CHUNK_BYTES) continue;
      yield message;
      message = undefined;
      filled = 0;
    }
  }
  if (message && filled) yield message.subarray(0, filled);
}

function limitOf(maxBytes: bigint): number {
  return maxBytes > 0n ? Number(maxBytes) : DEFAULT_TRANSFER_LIMIT_BYTES;
}

function mtimeOf(mtime: { seconds: bigint; nanos: number } | undefined): { mtimeSec?: number; mtimeNsec?: number } {
  return mtime ? { mtimeSec: Number(mtime.seconds), mtimeNsec: mtime.nanos } : {};
}

function entryMessage(entry: SandboxPathEntry): Omit<EntryMessage, "$typeName"> & { $typeName: "cleanroom.v1.SandboxPathEntry" } {
  return {
    $typeName: "cleanroom.v1.SandboxPathEntry",
    path: entry.path,
    type: entry.type,
    mode: entry.mode,
    size: BigInt(entry.size),
    mtime: { ...timestampFromMs(entry.mtimeSec * 1000), nanos: entry.mtimeNsec },
    uid: entry.uid,
    gid: entry.gid,
    linkTarget: entry.linkTarget ?? "",
  };
}
