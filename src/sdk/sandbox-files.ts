// Files of a sandbox from the client side: stat, streamed download and upload, tar archive and extract.
// Bytes travel as protobuf `bytes` in binary Connect messages of 1 MiB (file-messages.ts), so neither side holds
// a whole file and no byte is turned into base64 text.
import type { SandboxPathEntryJson } from "../api/index.ts";
import { CleanroomError } from "../errors/index.ts";
import type { Cleanroom } from "./client.ts";
import { protoFormat } from "./connect-json.ts";
import {
  chunkRequests, decodeArchiveReply, decodeDownloadReply, decodeExtractReply, decodeUploadReply,
  encodeArchiveRequest, encodeDownloadRequest, encodeExtractHeader, encodeUploadHeader,
} from "./file-messages.ts";

/** One path in a sandbox. */
export interface SandboxEntry {
  path: string;
  type: "file" | "dir" | "symlink" | "other";
  mode: number;
  size: number;
  /** RFC 3339 with nanoseconds, as the daemon sent it */
  mtime: string;
  linkTarget: string;
}

/** upload messages carry this much; the daemon sends downloads in messages of about the same size */
const CHUNK_BYTES = 1024 * 1024;

export function entryOf(json: SandboxPathEntryJson | undefined): SandboxEntry {
  return {
    path: json?.path ?? "",
    type: (json?.type ?? "other") as SandboxEntry["type"],
    mode: json?.mode ?? 0,
    size: Number(json?.size ?? 0),
    mtime: json?.mtime ?? "",
    linkTarget: json?.linkTarget ?? "",
  };
}

export async function statPath(client: Cleanroom, sandboxId: string, path: string, followSymlinks = false): Promise<SandboxEntry> {
  return entryOf((await client.sandboxes.statSandboxPath({ sandboxId, path, followSymlinks })).entry);
}

/** A file's entry (first) and its bytes as they arrive. */
export async function downloadFile(client: Cleanroom, sandboxId: string, path: string, maxBytes = 0): Promise<{ entry: SandboxEntry; content: AsyncGenerator<Buffer> }> {
  const stream = client.sandboxServerStreamEncoded("DownloadSandboxFile", encodeDownloadRequest({ sandboxId, path, maxBytes }), protoFormat(decodeDownloadReply));
  const first = await stream.next();
  if (first.done || !first.value.entry) {
    await stream.return(undefined);
    throw new CleanroomError("internal", `the daemon sent no entry for ${path}`);
  }
  const content = (async function* () {
    for await (const part of stream) if (part.chunk?.byteLength) yield part.chunk;
  })();
  return { entry: entryOf(first.value.entry), content };
}

/** Writes `content` (exactly `size` bytes) to `path`, atomically, with mode and mtime. */
export async function uploadFile(
  client: Cleanroom, sandboxId: string, path: string, content: AsyncIterable<Uint8Array>,
  opts: { size: number; mode?: number; mtime?: string; createParents?: boolean },
): Promise<SandboxEntry> {
  const header = encodeUploadHeader({ sandboxId, path, size: opts.size, mode: opts.mode ?? 0o644, createParents: opts.createParents ?? false, ...(opts.mtime ? { mtime: opts.mtime } : {}) });
  const reply = await client.sandboxClientStreamEncoded("UploadSandboxFile", withHeader(header, content), protoFormat(decodeUploadReply));
  return entryOf(reply.entry);
}

/** A tar stream of `paths` (relative to `dir`) in the sandbox. */
export async function* archivePaths(client: Cleanroom, sandboxId: string, dir: string, paths: string[], maxBytes = 0): AsyncGenerator<Buffer> {
  const request = encodeArchiveRequest({ sandboxId, dir, paths, maxBytes });
  for await (const chunk of client.sandboxServerStreamEncoded("ArchiveSandboxPaths", request, protoFormat(decodeArchiveReply))) {
    if (chunk.byteLength) yield chunk;
  }
}

/** Unpacks a tar stream into `dir` in the sandbox (made when missing). */
export async function extractArchive(client: Cleanroom, sandboxId: string, dir: string, tar: AsyncIterable<Uint8Array>, maxBytes = 0): Promise<{ entries: number; bytes: number }> {
  const header = encodeExtractHeader({ sandboxId, dir, maxBytes });
  return client.sandboxClientStreamEncoded("ExtractSandboxArchive", withHeader(header, tar), protoFormat(decodeExtractReply));
}

/** The header message, then the bytes as `{chunk}` messages of CHUNK_BYTES. */
async function* withHeader(header: Buffer, content: AsyncIterable<Uint8Array>): AsyncGenerator<Buffer> {
  yield header;
  yield* chunkRequests(content, CHUNK_BYTES);
}
