import { createReadStream } from "node:fs";
import { open } from "node:fs/promises";
import type { Readable } from "node:stream";
import * as zlib from "node:zlib";
import type { IdRange } from "../config/index.ts";
import { CleanroomError, isCleanroomError, messageOf } from "../errors/index.ts";
import { FILE_TYPES, LayerWriter, type SkippedEntry } from "./layer-writer.ts";
import { forEachTarEntry, invalidTar } from "./tar-stream.ts";

export interface UnpackLimits {
  maxEntries: number;
  /** bound on the uncompressed tar stream */
  maxBytes: number;
}

export const DEFAULT_UNPACK_LIMITS: UnpackLimits = { maxEntries: 1_000_000, maxBytes: 64 * 2 ** 30 };

export interface UnpackResult {
  diffId: string;
  entries: number;
  bytes: number;
  skipped: SkippedEntry[];
}


/** Opens a layer blob decompressed according to its magic bytes (gzip, zstd, or plain tar). */
export async function openLayerStream(blobPath: string): Promise<Readable> {
  const fh = await open(blobPath, "r");
  const magic = Buffer.alloc(4);
  try {
    await fh.read(magic, 0, 4, 0);
  } finally {
    await fh.close();
  }
  // large chunks: fewer hand-offs between zlib, the tar parser and the writer
  const src = createReadStream(blobPath, { highWaterMark: 1 << 20 });
  let decompressor: zlib.Gunzip | zlib.ZstdDecompress | undefined;
  if (magic[0] === 0x1f && magic[1] === 0x8b) decompressor = zlib.createGunzip({ chunkSize: 256 << 10 });
  else if (magic.equals(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]))) decompressor = zlib.createZstdDecompress({ chunkSize: 256 << 10 });
  if (!decompressor) return src;
  src.on("error", (e) => decompressor.destroy(e));
  return src.pipe(decompressor);
}

/**
 * Unpacks one layer tar stream into `dest` (an empty directory) with our own writer on top of
 * node-tar's streaming parser. Returns the sha256 of the uncompressed stream (the diff id).
 */
export async function unpackLayerStream(tarStream: Readable, dest: string, idRange: IdRange, limits: UnpackLimits = DEFAULT_UNPACK_LIMITS): Promise<UnpackResult> {
  const writer = new LayerWriter(dest, idRange);
  writer.init();
  try {
    const r = await forEachTarEntry(tarStream, {
      ...limits,
      wantsBody: (e) => FILE_TYPES.has(e.type),
      onEntry: (e, body) =>
        writer.apply({ type: e.type, path: e.path, linkpath: e.linkpath, mode: e.mode, uid: e.uid, gid: e.gid, mtime: e.mtime, size: e.size }, body),
      onIgnored: (e) => void writer.skipped.push({ path: e.path.slice(0, 300), reason: `unsupported entry type ${e.type}` }),
    });
    writer.finish();
    return { diffId: r.digest, entries: r.entries, bytes: r.bytes, skipped: writer.skipped };
  } catch (e) {
    throw toUnpackError(e);
  }
}

function toUnpackError(e: unknown): CleanroomError {
  if (isCleanroomError(e)) return e;
  const code = (e as NodeJS.ErrnoException).code;
  // the host's problems (disk full, permissions) are not the image's fault
  if (code === "ENOSPC" || code === "EDQUOT" || code === "EPERM" || code === "EACCES" || code === "EROFS") {
    return new CleanroomError("internal", `unpacking a layer failed on this host: ${messageOf(e)}; free disk space or run the daemon as root`);
  }
  if (code === "Z_DATA_ERROR" || code === "Z_BUF_ERROR" || code === "ERR_ZSTD_INVALID_INPUT" || /zlib|gzip|zstd|incorrect header check|unexpected end/i.test(messageOf(e))) {
    return invalidTar(`corrupt compressed data (${messageOf(e)})`);
  }
  return invalidTar(messageOf(e));
}
