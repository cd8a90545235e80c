// Files of a sandbox from the client side: stat, streamed download and upload, tar archive and extract.
// Bytes travel as base64 inside Connect JSON messages of about 1 MiB, so neither side holds a whole file.
import type { SandboxPathEntryJson } from "../api/index.ts";
import { CleanroomError } from "../errors/index.ts";
import type { Cleanroom } from "./client.ts";

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

const UPLOAD_CHUNK_BYTES = 1024 * 1024;

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
  const stream = client.sandboxes.downloadSandboxFile({ sandboxId, path, maxBytes: String(maxBytes) });
  const first = await stream.next();
  if (first.done || !first.value.entry) {
    await stream.return(undefined);
    throw new CleanroomError("internal", `the daemon sent no entry for ${path}`);
  }
  const content = (async function* () {
    for await (const message of stream) if (message.chunk) yield Buffer.from(message.chunk, "base64");
  })();
  return { entry: entryOf(first.value.entry), content };
}

/** Writes `content` (exactly `size` bytes) to `path`, atomically, with mode and mtime. */
export async function uploadFile(
  client: Cleanroom, sandboxId: string, path: string, content: AsyncIterable<Uint8Array>,
  opts: { size: number; mode?: number; mtime?: string; createParents?: boolean },
): Promise<SandboxEntry> {
  const header = { sandboxId, path, size: String(opts.size), mode: opts.mode ?? 0o644, createParents: opts.createParents ?? false, ...(opts.mtime ? { mtime: opts.mtime } : {}) };
  const reply = await client.sandboxClientStream("UploadSandboxFile", withHeader({ header }, content));
  return entryOf((reply as { entry?: SandboxPathEntryJson }).entry);
}

/** A tar stream of `paths` (relative to `dir`) in the sandbox. */
export async function* archivePaths(client: Cleanroom, sandboxId: string, dir: string, paths: string[], maxBytes = 0): AsyncGenerator<Buffer> {
  for await (const message of client.sandboxes.archiveSandboxPaths({ sandboxId, dir, paths, maxBytes: String(maxBytes) })) {
    if (message.chunk) yield Buffer.from(message.chunk, "base64");
  }
}

/** Unpacks a tar stream into `dir` in the sandbox (made when missing). */
export async function extractArchive(client: Cleanroom, sandboxId: string, dir: string, tar: AsyncIterable<Uint8Array>, maxBytes = 0): Promise<{ entries: number; bytes: number }> {
  const reply = (await client.sandboxClientStream("ExtractSandboxArchive", withHeader({ header: { sandboxId, dir, maxBytes: String(maxBytes) } }, tar))) as { entries?: string; bytes?: string };
  return { entries: Number(reply.entries ?? 0), bytes: Number(reply.bytes ?? 0) };
}

/** The header message, then the bytes as `{chunk}` messages of about 1 MiB. */
async function* withHeader(header: unknown, content: AsyncIterable<Uint8Array>): AsyncGenerator<unknown> {
  yield header;
  let pending: Buffer[] = [];
  let size = 0;
  for await (const piece of content) {
    pending.push(Buffer.from(piece));
    size += piece.byteLength;
    if (size >= UPLOAD_CHUNK_BYTES) {
      yield { chunk: Buffer.concat(pending, size).toString("base64") };
      pending = [];
      size = 0;
    }
  }
  if (size) yield { chunk: Buffer.concat(pending, size).toString("base64") };
}
