import { PassThrough, Readable, pipeline } from "node:stream";
import { CleanroomError } from "../errors/index.ts";
import { protocolError } from "./control-messages.ts";
import { BoundedOutputStream, ReadContentStream } from "./file-content-streams.ts";
import {
  parseEntryLine, parseExtractResult, parseReadHeader, parseRemoveResult, parseWalkLine, type SandboxPathEntry,
} from "./file-entry.ts";
import { FileHelperRun, collectResult, feedStdin, settleRun, splitLines } from "./file-helper.ts";
import type { AgentClient } from "./types.ts";

/** Where the agent binary is bind-mounted (read-only) in every sandbox. */
export const DEFAULT_AGENT_PATH_IN_SANDBOX = "/.cleanroom/cleanroom-agent";
/** An entry line, a result line or read's header: the helper's are a few hundred bytes. */
const MAX_LINE_BYTES = 64 * 1024;
/** Above the content, a tar entry costs at most a header, a PAX header with path and linkpath, and padding. */
const TAR_OVERHEAD_PER_ENTRY_BYTES = 12 * 1024;
const TAR_END_BYTES = 10 * 1024;
const DEFAULT_ARCHIVE_MAX_ENTRIES = 100_000;

export interface WriteOptions {
  /** permission bits plus setuid/setgid/sticky; default 0o644; the umask does not apply */
  mode?: number;
  mtimeSec?: number;
  mtimeNsec?: number;
  /** make missing parent directories (0755) */
  createParents?: boolean;
  /** the exact byte count the content must have (default for a Uint8Array: its length) */
  size?: number;
  maxBytes: number;
}

/**
 * Files inside a sandbox, through the agent's file helper (agent/PROTOCOL.md, "File operations"). Paths
 * are absolute and resolved in the sandbox's own mount namespace. Everything the helper prints is checked;
 * failures are CleanroomErrors with the helper's reason code (not_found, permission_denied, ...).
 */
export class SandboxFiles {
  readonly #agent: AgentClient;
  readonly #agentPath: string;

  constructor(agent: AgentClient, opts: { agentPath?: string } = {}) {
    this.#agent = agent;
    this.#agentPath = opts.agentPath ?? DEFAULT_AGENT_PATH_IN_SANDBOX;
  }

  /** lstat (stat with followSymlinks) of one path. */
  async stat(path: string, opts: { followSymlinks?: boolean } = {}): Promise<SandboxPathEntry> {
    const run = this.#start("stat", { path, followSymlinks: opts.followSymlinks ?? false });
    return settleRun(run, collectResult(run, MAX_LINE_BYTES).then((line) => parseEntryLine(line, path)));
  }

  /** The tree under path, depth first, paths relative to it; symlinks are listed, not followed. */
  async walk(path: string, opts: { maxDepth?: number; maxEntries: number }): Promise<{ entries: SandboxPathEntry[]; truncated: boolean }> {
    const run = this.#start("walk", { path, maxDepth: opts.maxDepth ?? 0, maxEntries: opts.maxEntries });
    return settleRun(run, collectWalk(run, opts.maxEntries));
  }

  /**
   * Reads up to maxBytes from offset. Resolves once the header is in; `content` streams the bytes and
   * errors (with the helper's CleanroomError, or agent_protocol_error for a wrong byte count) instead of
   * ending when the read fails. Destroying `content` early stops the helper.
   */
  async read(path: string, opts: { offset?: number; maxBytes: number }): Promise<{ entry: SandboxPathEntry & { truncated: boolean }; content: Readable }> {
    const offset = opts.offset ?? 0;
    requireCount(offset, "offset", 0);
    requireCount(opts.maxBytes, "maxBytes", 1);
    const run = this.#start("read", { path, offset, maxBytes: opts.maxBytes });
    const parseHeader = (line: Buffer) => {
      const header = parseReadHeader(line, path);
      const available = Math.max(0, header.size - offset);
      if (header.truncated !== available > opts.maxBytes) throw protocolError("the file helper's read header has a wrong truncated flag");
      return { header, contentBytes: Math.min(available, opts.maxBytes) };
    };
    const content = new ReadContentStream(parseHeader, run.succeeded, MAX_LINE_BYTES);
    pipeline(run.stdout, content, (err) => {
      if (err) run.kill(err);
    });
    return { entry: await content.header, content };
  }

  /** Writes content atomically (temp file, then rename over path); a symlink at path is replaced, not followed. */
  async write(path: string, content: Readable | Uint8Array, opts: WriteOptions): Promise<SandboxPathEntry> {
    const bytes = content instanceof Uint8Array ? Buffer.from(content.buffer, content.byteOffset, content.byteLength) : undefined;
    const { maxBytes, mode, mtimeSec, mtimeNsec, createParents } = opts;
    const size = opts.size ?? bytes?.length;
    const run = this.#start("write", { path, mode, mtimeSec, mtimeNsec, createParents: createParents ?? false, size, maxBytes }, true);
    const input = bytes ? Readable.from([bytes]) : (content as Readable);
    const [, line] = await settleRun(run, Promise.all([feedStdin(run, input), collectResult(run, MAX_LINE_BYTES)]));
    return parseEntryLine(line, path);
  }

  /** Removes path (recursive for a non-empty directory) without following symlinks; false when it did not exist. */
  async remove(path: string, opts: { recursive?: boolean } = {}): Promise<boolean> {
    const run = this.#start("remove", { path, recursive: opts.recursive ?? false });
    return settleRun(run, collectResult(run, MAX_LINE_BYTES).then(parseRemoveResult));
  }

  /**
   * A tar stream of paths (relative to dir; "." is dir's contents). Symlinks are stored, never followed.
   * More than maxBytes of file content or maxEntries entries (default 100000) fails with resource_exhausted.
   * The stream errors instead of ending when the helper fails; destroying it early stops the helper.
   */
  archive(dir: string, paths: string[], opts: { maxBytes: number; maxEntries?: number }): Readable {
    const maxEntries = opts.maxEntries ?? DEFAULT_ARCHIVE_MAX_ENTRIES;
    let run: FileHelperRun;
    try {
      requireCount(opts.maxBytes, "maxBytes", 0);
      requireCount(maxEntries, "maxEntries", 1);
      run = this.#start("archive", { dir, paths, maxBytes: opts.maxBytes, maxEntries });
    } catch (err) {
      const failed = new PassThrough();
      failed.destroy(err as Error);
      return failed;
    }
    const limit = opts.maxBytes + maxEntries * TAR_OVERHEAD_PER_ENTRY_BYTES + TAR_END_BYTES;
    const tar = new BoundedOutputStream(limit, run.succeeded);
    pipeline(run.stdout, tar, (err) => {
      if (err) run.kill(err);
    });
    return tar;
  }

  /** Unpacks a tar stream into dir (an existing directory, or made first with createDir), never writing through a symlink. */
  async extract(dir: string, tar: Readable, opts: { maxBytes: number; maxEntries: number; createDir?: boolean }): Promise<{ entries: number; bytes: number }> {
    const run = this.#start("extract", { dir, maxBytes: opts.maxBytes, maxEntries: opts.maxEntries, ...(opts.createDir ? { createDir: true } : {}) }, true);
    const [, line] = await settleRun(run, Promise.all([feedStdin(run, tar), collectResult(run, MAX_LINE_BYTES)]));
    return parseExtractResult(line);
  }

  #start(op: string, request: Record<string, unknown>, stdin = false): FileHelperRun {
    return new FileHelperRun(this.#agent, this.#agentPath, op, request, { stdin });
  }
}

/** Parses walk's lines as they stream: at most maxEntries entries, then possibly the truncation marker. */
async function collectWalk(run: FileHelperRun, maxEntries: number): Promise<{ entries: SandboxPathEntry[]; truncated: boolean }> {
  const entries: SandboxPathEntry[] = [];
  let truncated = false;
  try {
    for await (const line of splitLines(run.stdout, MAX_LINE_BYTES)) {
      if (truncated) throw protocolError("the file helper's walk went on after its truncation marker");
      const parsed = parseWalkLine(line);
      if (parsed === "truncated") truncated = true;
      else entries.push(parsed);
      if (entries.length > maxEntries) throw protocolError(`the file helper's walk sent more than ${maxEntries} entries`);
    }
  } catch (err) {
    run.killIfRunning(run.stdout, err as Error);
    throw err;
  }
  return { entries, truncated };
}

function requireCount(value: unknown, name: string, min: number): asserts value is number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min) {
    throw new CleanroomError("invalid_argument", `sandbox file operation: ${name} must be an integer of at least ${min}`);
  }
}
