// The messages of the file-transfer RPCs (DownloadSandboxFile, UploadSandboxFile, ArchiveSandboxPaths,
// ExtractSandboxArchive) in the protobuf binary encoding, written by hand for just their fields (sandbox.proto).
// Why binary: as Connect JSON every file byte crossed the daemon as base64 text, and protobuf-es's JSON codec
// (parsing, duplicate-key checks, pure-JS base64) took most of the daemon's CPU; a copy ran at 20-30 MiB/s. In
// binary a chunk is a length prefix and the bytes. Why by hand: the CLI must not load protobuf-es at start
// (connect-json.ts). test/sdk/file-messages.test.ts checks these encodings against the generated schemas.
import type { SandboxPathEntryJson } from "../api/index.ts";
import { CleanroomError } from "../errors/index.ts";

const VARINT = 0;
const FIXED64 = 1;
const LENGTH_DELIMITED = 2;
const FIXED32 = 5;
/** `bytes chunk = 2` of UploadSandboxFileRequest and ExtractSandboxArchiveRequest */
const REQUEST_CHUNK_FIELD = 2;
const MIN_TIMESTAMP_MS = Date.parse("0001-01-01T00:00:00Z");
const MAX_TIMESTAMP_MS = Date.parse("9999-12-31T23:59:59Z");
const RFC_3339 = /^([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?(Z|[+-][0-9]{2}:[0-9]{2})$/;

export function encodeDownloadRequest(req: { sandboxId: string; path: string; maxBytes: number }): Buffer {
  return new MessageWriter().string(1, req.sandboxId).string(2, req.path).uint(3, req.maxBytes).finish();
}

export function encodeArchiveRequest(req: { sandboxId: string; dir: string; paths: string[]; maxBytes: number }): Buffer {
  return new MessageWriter().string(1, req.sandboxId).string(2, req.dir).strings(3, req.paths).uint(4, req.maxBytes).finish();
}

/** UploadSandboxFileRequest carrying the header; `mtime` is RFC 3339. */
export function encodeUploadHeader(header: { sandboxId: string; path: string; mode: number; mtime?: string; size: number; createParents: boolean }): Buffer {
  const fields = new MessageWriter().string(1, header.sandboxId).string(2, header.path).uint(3, header.mode);
  if (header.mtime !== undefined) fields.message(4, timestampMessage(header.mtime));
  return new MessageWriter().message(1, fields.uint(5, header.size).bool(6, header.createParents)).finish();
}

/** ExtractSandboxArchiveRequest carrying the header. */
export function encodeExtractHeader(header: { sandboxId: string; dir: string; maxBytes: number }): Buffer {
  return new MessageWriter().message(1, new MessageWriter().string(1, header.sandboxId).string(2, header.dir).uint(3, header.maxBytes)).finish();
}

/**
 * The content as `{chunk}` request messages of chunkBytes (the last one shorter). Each piece is copied once,
 * straight into its message, so a caller may reuse its buffers.
 */
export async function* chunkRequests(content: AsyncIterable<Uint8Array>, chunkBytes: number): AsyncGenerator<Buffer> {
  const room = keyBytes(REQUEST_CHUNK_FIELD, LENGTH_DELIMITED).length + varint(BigInt(chunkBytes)).length;
  let message = Buffer.allocUnsafe(room + chunkBytes);
  let filled = 0;
  for await (const piece of content) {
    for (let offset = 0; offset < piece.byteLength;) {
      const take = Math.min(chunkBytes - filled, piece.byteLength - offset);
      message.set(piece.subarray(offset, offset + take), room + filled);
      filled += take;
      offset += take;
      if (filled < chunkBytes) continue;
      yield sealChunk(message, room, filled);
      message = Buffer.allocUnsafe(room + chunkBytes);
      filled = 0;
    }
  }
  if (filled) yield sealChunk(message, room, filled);
}

/** Writes the field key and length right before the content, which starts at `room`. */
function sealChunk(message: Buffer, room: number, size: number): Buffer {
  const head = Buffer.from([...keyBytes(REQUEST_CHUNK_FIELD, LENGTH_DELIMITED), ...varint(BigInt(size))]);
  head.copy(message, room - head.length);
  return message.subarray(room - head.length, room + size);
}

/** DownloadSandboxFileResponse: the entry (first message) or a chunk, a view of `payload`. */
export function decodeDownloadReply(payload: Buffer): { entry?: SandboxPathEntryJson; chunk?: Buffer } {
  let part: { entry?: SandboxPathEntryJson; chunk?: Buffer } = {};
  for (const [field, value] of fieldsOf(payload, "DownloadSandboxFileResponse")) {
    if (field === 1) part = { entry: entryFrom(bytesOf(value)) };
    else if (field === 2) part = { chunk: bytesOf(value) };
  }
  return part;
}

/** ArchiveSandboxPathsResponse: its chunk, a view of `payload`. */
export function decodeArchiveReply(payload: Buffer): Buffer {
  let chunk: Buffer = Buffer.alloc(0);
  for (const [field, value] of fieldsOf(payload, "ArchiveSandboxPathsResponse")) if (field === 1) chunk = bytesOf(value);
  return chunk;
}

/** UploadSandboxFileResponse: the written file's entry. */
export function decodeUploadReply(payload: Buffer): { entry?: SandboxPathEntryJson } {
  let entry: SandboxPathEntryJson | undefined;
  for (const [field, value] of fieldsOf(payload, "UploadSandboxFileResponse")) if (field === 1) entry = entryFrom(bytesOf(value));
  return entry ? { entry } : {};
}

export function decodeExtractReply(payload: Buffer): { entries: number; bytes: number } {
  const reply = { entries: 0, bytes: 0 };
  for (const [field, value] of fieldsOf(payload, "ExtractSandboxArchiveResponse")) {
    if (field === 1) reply.entries = Number(BigInt.asUintN(64, varintOf(value)));
    else if (field === 2) reply.bytes = Number(BigInt.asUintN(64, varintOf(value)));
  }
  return reply;
}

/** A SandboxPathEntry as its JSON form, so that one mapping (sandbox-files.ts entryOf) serves both encodings. */
function entryFrom(message: Buffer): SandboxPathEntryJson {
  const entry: SandboxPathEntryJson = {};
  for (const [field, value] of fieldsOf(message, "SandboxPathEntry")) {
    switch (field) {
      case 1: entry.path = bytesOf(value).toString("utf8"); break;
      case 2: entry.type = bytesOf(value).toString("utf8"); break;
      case 3: entry.mode = uint32Of(value); break;
      case 4: entry.size = String(BigInt.asUintN(64, varintOf(value))); break;
      case 5: entry.mtime = timestampText(bytesOf(value)); break;
      case 6: entry.uid = uint32Of(value); break;
      case 7: entry.gid = uint32Of(value); break;
      case 8: entry.linkTarget = bytesOf(value).toString("utf8"); break;
    }
  }
  return entry;
}

/**
 * A google.protobuf.Timestamp as protobuf-es writes it in JSON (0, 3, 6 or 9 fraction digits). One outside
 * years 1..9999 is "" (unknown), as the JSON encoding has no form for it.
 */
function timestampText(message: Buffer): string {
  let seconds = 0n;
  let nanos = 0;
  for (const [field, value] of fieldsOf(message, "Timestamp")) {
    if (field === 1) seconds = BigInt.asIntN(64, varintOf(value));
    else if (field === 2) nanos = Number(BigInt.asIntN(32, varintOf(value)));
  }
  const ms = Number(seconds) * 1000;
  if (ms < MIN_TIMESTAMP_MS || ms > MAX_TIMESTAMP_MS || nanos < 0 || nanos > 999_999_999) return "";
  const digits = String(nanos + 1_000_000_000).slice(1);
  const fraction = nanos === 0 ? "" : digits.endsWith("000000") ? digits.slice(0, 3) : digits.endsWith("000") ? digits.slice(0, 6) : digits;
  return new Date(ms).toISOString().replace(".000Z", fraction ? `.${fraction}Z` : "Z");
}

function timestampMessage(text: string): MessageWriter {
  const match = RFC_3339.exec(text);
  const ms = match ? Date.parse(`${match[1]}-${match[2]}-${match[3]}T${match[4]}:${match[5]}:${match[6]}${match[8]}`) : NaN;
  if (!match || Number.isNaN(ms) || ms < MIN_TIMESTAMP_MS || ms > MAX_TIMESTAMP_MS) {
    throw new CleanroomError("invalid_argument", `mtime ${JSON.stringify(text)}: expected an RFC 3339 time between years 1 and 9999`);
  }
  const nanos = match[7] ? Number(match[7].padEnd(9, "0")) : 0;
  return new MessageWriter().uint(1, BigInt(ms / 1000)).uint(2, nanos);
}

/** A message's fields, appended in field-number order; proto3 defaults (0, "", false) are left out. */
class MessageWriter {
  readonly #parts: Buffer[] = [];

  uint(field: number, value: number | bigint): this {
    if (value) this.#parts.push(Buffer.from([...keyBytes(field, VARINT), ...varint(BigInt(value))]));
    return this;
  }

  bool(field: number, value: boolean): this {
    return this.uint(field, value ? 1 : 0);
  }

  string(field: number, value: string): this {
    if (value) this.#lengthDelimited(field, Buffer.from(value, "utf8"));
    return this;
  }

  /** A repeated string: every element is written, also an empty one. */
  strings(field: number, values: string[]): this {
    for (const value of values) this.#lengthDelimited(field, Buffer.from(value, "utf8"));
    return this;
  }

  /** A message field is present even when all its fields are defaults (a oneof case, a zero Timestamp). */
  message(field: number, inner: MessageWriter): this {
    this.#lengthDelimited(field, inner.finish());
    return this;
  }

  finish(): Buffer {
    return Buffer.concat(this.#parts);
  }

  #lengthDelimited(field: number, bytes: Buffer): void {
    this.#parts.push(Buffer.from([...keyBytes(field, LENGTH_DELIMITED), ...varint(BigInt(bytes.length))]), bytes);
  }
}

function keyBytes(field: number, wireType: number): number[] {
  return varint(BigInt(field * 8 + wireType));
}

/** Base-128 varint; a negative int64 is its two's complement (ten bytes), as protobuf has it. */
function varint(value: bigint): number[] {
  let rest = BigInt.asUintN(64, value);
  const out: number[] = [];
  for (; rest > 0x7fn; rest >>= 7n) out.push(Number(rest & 0x7fn) | 0x80);
  out.push(Number(rest));
  return out;
}

/** The fields of a message in wire order: a varint's value, or a view of a length-delimited or fixed-size field. */
function* fieldsOf(message: Buffer, name: string): Generator<[field: number, value: bigint | Buffer]> {
  const malformed = () => new CleanroomError("internal", `the daemon sent a malformed ${name} message`);
  let at = 0;
  const readVarint = (): bigint => {
    let value = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      const byte = message[at++];
      if (byte === undefined) throw malformed();
      value |= BigInt(byte & 0x7f) << shift;
      if (byte < 0x80) return value;
    }
    throw malformed();
  };
  const take = (bytes: number): Buffer => {
    if (bytes > message.length - at) throw malformed();
    at += bytes;
    return message.subarray(at - bytes, at);
  };
  while (at < message.length) {
    const key = readVarint();
    const field = Number(key >> 3n);
    const wireType = Number(key & 7n);
    if (field === 0) throw malformed();
    if (wireType === VARINT) yield [field, readVarint()];
    else if (wireType === LENGTH_DELIMITED) yield [field, take(Number(readVarint()))];
    else if (wireType === FIXED64) yield [field, take(8)];
    else if (wireType === FIXED32) yield [field, take(4)];
    else throw malformed();
  }
}

function varintOf(value: bigint | Buffer): bigint {
  if (typeof value !== "bigint") throw new CleanroomError("internal", "the daemon sent a length-delimited field where a number belongs");
  return value;
}

function uint32Of(value: bigint | Buffer): number {
  return Number(BigInt.asUintN(32, varintOf(value)));
}

function bytesOf(value: bigint | Buffer): Buffer {
  if (typeof value === "bigint") throw new CleanroomError("internal", "the daemon sent a number where bytes or a message belong");
  return value;
}
