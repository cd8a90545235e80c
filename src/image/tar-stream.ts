import { createHash } from "node:crypto";
import { once } from "node:events";
import type { Readable } from "node:stream";
import { Parser, type ReadEntry } from "tar";
import { CleanroomError } from "../errors/index.ts";

export interface TarWalkOptions {
  maxEntries: number;
  /** bound on the tar stream as read (uncompressed when the caller decompressed it) */
  maxBytes: number;
  /** decided synchronously per entry: will onEntry read this entry's body? (others are drained) */
  wantsBody: (entry: ReadEntry) => boolean;
  /** called strictly in archive order, one at a time; must consume `body` when given */
  onEntry: (entry: ReadEntry, body: AsyncIterable<Buffer> | undefined) => Promise<void>;
  onIgnored?: (entry: ReadEntry) => void;
}

export interface TarWalkResult {
  /** sha256 of the stream as read */
  digest: string;
  entries: number;
  bytes: number;
}

const MAX_PENDING_ENTRIES = 256;
const FATAL_TAR_WARNINGS = new Set(["TAR_ENTRY_INVALID", "TAR_BAD_ARCHIVE", "TAR_ABORT", "TAR_ENTRY_ERROR"]);

export function invalidTar(why: string): CleanroomError {
  return new CleanroomError("image_invalid", `archive refused: ${why}; the image is corrupt or hostile — do not use it`);
}

/**
 * Walks a tar stream with node-tar's streaming Parser (parsing only: nothing is extracted by it),
 * handing entries to `onEntry` sequentially with backpressure. Any malformed header, truncated
 * archive, or bound exceeded is fatal.
 */
export async function forEachTarEntry(stream: Readable, opts: TarWalkOptions): Promise<TarWalkResult> {
  const hash = createHash("sha256");
  const parser = new Parser({ zstd: false, maxMetaEntrySize: 1 << 20 });
  let failure: unknown;
  let failNow: (e: unknown) => void = () => {};
  const failed = new Promise<never>((_, reject) => { failNow = reject; });
  failed.catch(() => {});
  const fail = (e: unknown) => {
    if (failure === undefined) {
      failure = e;
      failNow(e);
    }
  };
  let entries = 0;
  let bytes = 0;
  let pending = 0;
  let linkDone: () => void = () => {};
  let chain: Promise<void> = Promise.resolve();

  parser.on("warn", (code: string, message: string) => {
    if (FATAL_TAR_WARNINGS.has(code)) fail(invalidTar(`bad tar data (${code}: ${message})`));
  });
  parser.on("error", (e: Error) => fail(invalidTar(`bad tar data (${e.message})`)));
  parser.on("ignoredEntry", (entry: ReadEntry) => {
    if (!entry.meta) opts.onIgnored?.(entry);
  });
  parser.on("entry", (entry: ReadEntry) => {
    entries++;
    if (entries > opts.maxEntries) fail(invalidTar(`more than ${opts.maxEntries} entries`));
    if (entry.size > opts.maxBytes - bytes) {
      fail(invalidTar(`entry ${entry.path.slice(0, 200)} declares ${entry.size} bytes, beyond the ${opts.maxBytes}-byte limit`));
    }
    const withBody = failure === undefined && opts.wantsBody(entry);
    if (!withBody) entry.resume();
    pending++;
    chain = chain
      .then(async () => {
        if (failure !== undefined) return;
        await opts.onEntry(entry, withBody ? (entry as AsyncIterable<Buffer>) : undefined);
      })
      .catch((e: unknown) => fail(e))
      .finally(() => {
        // a body nobody read (failure, or a handler that returned early) must not stall the parser
        if (withBody) entry.resume();
        pending--;
        linkDone();
      });
  });

  const waitForLinks = () => new Promise<void>((r) => { linkDone = r; });
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      if (failure !== undefined) break;
      bytes += chunk.length;
      if (bytes > opts.maxBytes) throw invalidTar(`more than ${opts.maxBytes} bytes`);
      hash.update(chunk);
      if (!parser.write(chunk)) await Promise.race([once(parser, "drain"), failed]);
      while (pending > MAX_PENDING_ENTRIES && failure === undefined) await Promise.race([waitForLinks(), failed]);
    }
    if (failure === undefined) {
      const ended = once(parser, "end");
      parser.end();
      await Promise.race([ended, failed]);
    }
    await chain;
    if (failure !== undefined) throw failure;
  } catch (e) {
    stream.destroy();
    throw failure ?? e;
  }
  return { digest: `sha256:${hash.digest("hex")}`, entries, bytes };
}
