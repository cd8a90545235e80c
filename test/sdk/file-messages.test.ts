// The SDK's hand-written binary codec for the file-transfer RPCs, checked against the generated protobuf-es schemas
// the daemon uses: what one side writes, the other must read field for field.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import { create, fromBinary, toBinary, toJson } from "@bufbuild/protobuf";
import {
  ArchiveSandboxPathsRequestSchema, ArchiveSandboxPathsResponseSchema, DownloadSandboxFileRequestSchema,
  DownloadSandboxFileResponseSchema, ExtractSandboxArchiveRequestSchema, ExtractSandboxArchiveResponseSchema,
  SandboxPathEntrySchema, UploadSandboxFileRequestSchema, UploadSandboxFileResponseSchema,
} from "../../src/api/index.ts";
import { isCleanroomError } from "../../src/errors/index.ts";
import {
  chunkRequests, decodeArchiveReply, decodeDownloadReply, decodeExtractReply, decodeUploadReply,
  encodeArchiveRequest, encodeDownloadRequest, encodeExtractHeader, encodeUploadHeader,
} from "../../src/sdk/file-messages.ts";

const BIG = 2 ** 40 + 3; // beyond 32 bits, still a safe integer

function entry(seconds: bigint, nanos: number) {
  return create(SandboxPathEntrySchema, {
    path: "/tmp/é x", type: "file", mode: 0o4755, size: BigInt(BIG), mtime: { seconds, nanos }, uid: 4_000_000_000, gid: 7, linkTarget: "",
  });
}

test("requests read back in the daemon's schemas field for field", () => {
  const download = fromBinary(DownloadSandboxFileRequestSchema, encodeDownloadRequest({ sandboxId: "abc123def456", path: "/a/b", maxBytes: BIG }));
  assert.deepEqual([download.sandboxId, download.path, download.maxBytes], ["abc123def456", "/a/b", BigInt(BIG)]);

  const archive = fromBinary(ArchiveSandboxPathsRequestSchema, encodeArchiveRequest({ sandboxId: "s", dir: "/d", paths: [".", "", "ü/x"], maxBytes: 0 }));
  assert.deepEqual([archive.sandboxId, archive.dir, archive.paths, archive.maxBytes], ["s", "/d", [".", "", "ü/x"], 0n]);

  const extract = fromBinary(ExtractSandboxArchiveRequestSchema, encodeExtractHeader({ sandboxId: "s", dir: "/d", maxBytes: 5 }));
  assert.equal(extract.part.case, "header");
  assert.deepEqual([extract.part.value?.sandboxId, extract.part.value?.dir, extract.part.value?.maxBytes], ["s", "/d", 5n]);
});

test("an upload header carries mode, size and an RFC 3339 mtime to the nanosecond, also before 1970", () => {
  const cases: [string, bigint, number][] = [
    ["2024-02-03T04:05:06.789Z", 1706933106n, 789_000_000],
    ["2024-02-03T04:05:06.123456789+01:00", 1706929506n, 123_456_789],
    ["1960-01-01T00:00:00Z", -315619200n, 0],
  ];
  for (const [mtime, seconds, nanos] of cases) {
    const message = fromBinary(UploadSandboxFileRequestSchema, encodeUploadHeader({ sandboxId: "s", path: "/f", mode: 0o750, mtime, size: BIG, createParents: true }));
    assert.equal(message.part.case, "header");
    const header = message.part.value!;
    assert.deepEqual([header.mode, header.size, header.createParents, header.mtime?.seconds, header.mtime?.nanos], [0o750, BigInt(BIG), true, seconds, nanos], mtime);
  }
  const without = fromBinary(UploadSandboxFileRequestSchema, encodeUploadHeader({ sandboxId: "s", path: "/f", mode: 0o644, size: 0, createParents: false }));
  assert.equal(without.part.case === "header" && without.part.value.mtime, undefined);
  assert.throws(() => encodeUploadHeader({ sandboxId: "s", path: "/f", mode: 0, mtime: "yesterday", size: 0, createParents: false }), (err) => isCleanroomError(err, "invalid_argument"));
});

test("a daemon's entry reads as the JSON the daemon would have sent, whatever the mtime's precision", () => {
  for (const [seconds, nanos] of [[1706933106n, 0], [1706933106n, 789_000_000], [1706933106n, 789_123_000], [1706933106n, 789_123_456], [-315619200n, 5]] as const) {
    const sent = entry(seconds, nanos);
    const reply = decodeDownloadReply(Buffer.from(toBinary(DownloadSandboxFileResponseSchema, create(DownloadSandboxFileResponseSchema, { part: { case: "entry", value: sent } }))));
    assert.deepEqual(reply, { entry: toJson(SandboxPathEntrySchema, sent) });
    const uploaded = decodeUploadReply(Buffer.from(toBinary(UploadSandboxFileResponseSchema, create(UploadSandboxFileResponseSchema, { entry: sent }))));
    assert.deepEqual(uploaded, { entry: toJson(SandboxPathEntrySchema, sent) });
  }
});

test("chunks and counts come back as sent", () => {
  const bytes = randomBytes(70_000);
  const download = decodeDownloadReply(Buffer.from(toBinary(DownloadSandboxFileResponseSchema, create(DownloadSandboxFileResponseSchema, { part: { case: "chunk", value: bytes } }))));
  assert.deepEqual(download.chunk, bytes);
  const archive = decodeArchiveReply(Buffer.from(toBinary(ArchiveSandboxPathsResponseSchema, create(ArchiveSandboxPathsResponseSchema, { chunk: bytes }))));
  assert.deepEqual(archive, bytes);
  const extracted = decodeExtractReply(Buffer.from(toBinary(ExtractSandboxArchiveResponseSchema, create(ExtractSandboxArchiveResponseSchema, { entries: 12n, bytes: BigInt(BIG) }))));
  assert.deepEqual(extracted, { entries: 12, bytes: BIG });
});

test("content becomes chunk messages of exactly the chunk size, copied, so the caller may reuse its buffers", async () => {
  const content = randomBytes(10_000);
  const reused = Buffer.alloc(3_000);
  async function* pieces() {
    for (let at = 0; at < content.length; at += reused.length) {
      const piece = content.subarray(at, at + reused.length);
      piece.copy(reused);
      yield reused.subarray(0, piece.length);
    }
  }
  const received: Buffer[] = [];
  for await (const message of chunkRequests(pieces(), 4_096)) {
    const decoded = fromBinary(UploadSandboxFileRequestSchema, message);
    assert.equal(decoded.part.case, "chunk");
    received.push(Buffer.from(decoded.part.value as Uint8Array));
  }
  assert.deepEqual(received.map((chunk) => chunk.length), [4_096, 4_096, 1_808]);
  assert.deepEqual(Buffer.concat(received), content);
});

test("a malformed reply is an internal error, not a wrong value", () => {
  const internal = (err: unknown) => isCleanroomError(err, "internal");
  assert.throws(() => decodeDownloadReply(Buffer.from([0x12, 0x05, 1, 2])), internal); // chunk shorter than its length
  assert.throws(() => decodeDownloadReply(Buffer.from([0x10, 0x01])), internal); // chunk field as a number
  assert.throws(() => decodeExtractReply(Buffer.from([0x08, 0xff])), internal); // varint cut off
  assert.throws(() => decodeArchiveReply(Buffer.from([0x0b])), internal); // wire type 3 (groups) is not ours
});
