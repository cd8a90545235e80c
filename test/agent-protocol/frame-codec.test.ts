import { test } from "node:test";
import assert from "node:assert/strict";
import { isCleanroomError } from "../../src/errors/index.ts";
import {
  FrameDecoder, FrameType, encodeFrame, encodeJsonFrame, FRAME_HEADER_BYTES, MAX_FRAME_PAYLOAD_BYTES, type Frame,
} from "../../src/agent-protocol/index.ts";

function decodeAll(chunks: Buffer[]): Frame[] {
  const frames: Frame[] = [];
  const decoder = new FrameDecoder((frame) => frames.push({ ...frame, payload: Buffer.from(frame.payload) }));
  for (const chunk of chunks) decoder.push(chunk);
  assert.ok(decoder.atFrameBoundary);
  return frames;
}

const sample: Frame[] = [
  { type: FrameType.HELLO, stream: 0, channel: 0, payload: Buffer.from('{"protocol":1,"agent":"x"}') },
  { type: FrameType.EOF, stream: 1, channel: 7, payload: Buffer.alloc(0) },
  { type: FrameType.DATA, stream: 2, channel: 0xffffffff, payload: Buffer.alloc(70_000, 0x5a) },
  { type: FrameType.WINDOW, stream: 0, channel: 3, payload: Buffer.from('{"credit":65536}') },
];

test("the header is 12 bytes: length, type, stream, flags, channel, big-endian", () => {
  const bytes = encodeFrame(FrameType.EXIT, 2, 0x01020304, Buffer.from("{}"));
  assert.deepEqual([...bytes], [0, 0, 0, 2, 0x11, 2, 0, 0, 1, 2, 3, 4, 0x7b, 0x7d]);
  assert.equal(FRAME_HEADER_BYTES, 12);
});

test("frames round-trip whole, byte by byte, and in odd-sized chunks", () => {
  const wire = Buffer.concat(sample.map((f) => encodeFrame(f.type, f.stream, f.channel, f.payload)));
  assert.deepEqual(decodeAll([wire]), sample);
  const bytewise: Buffer[] = [];
  for (let i = 0; i < wire.length; i += 1) bytewise.push(wire.subarray(i, i + 1));
  assert.deepEqual(decodeAll(bytewise), sample);
  const odd: Buffer[] = [];
  for (let i = 0; i < wire.length; i += 4093) odd.push(wire.subarray(i, i + 4093));
  assert.deepEqual(decodeAll(odd), sample);
});

test("a JSON frame carries its value", () => {
  const [frame] = decodeAll([encodeJsonFrame(FrameType.EXEC, 0, 5, { argv: ["echo", "hi"] })]);
  assert.deepEqual(JSON.parse(frame!.payload.toString()), { argv: ["echo", "hi"] });
  assert.equal(frame!.channel, 5);
});

test("a declared length over 1 MiB is refused from the header alone", () => {
  const header = Buffer.alloc(FRAME_HEADER_BYTES);
  header.writeUInt32BE(MAX_FRAME_PAYLOAD_BYTES + 1, 0);
  header[4] = FrameType.DATA;
  const decoder = new FrameDecoder(() => assert.fail("no frame expected"));
  assert.throws(() => decoder.push(header), (err) => isCleanroomError(err, "agent_protocol_error"));
  assert.throws(() => decoder.push(Buffer.alloc(1)), (err) => isCleanroomError(err, "agent_protocol_error"), "a failed decoder stays failed");
});

test("a payload of exactly 1 MiB is accepted", () => {
  const payload = Buffer.alloc(MAX_FRAME_PAYLOAD_BYTES, 1);
  const [frame] = decodeAll([encodeFrame(FrameType.DATA, 1, 1, payload)]);
  assert.equal(frame!.payload.length, MAX_FRAME_PAYLOAD_BYTES);
  assert.throws(() => encodeFrame(FrameType.DATA, 1, 1, Buffer.alloc(MAX_FRAME_PAYLOAD_BYTES + 1)), RangeError);
});

test("non-zero flags are refused", () => {
  const bytes = encodeFrame(FrameType.PONG, 0, 0);
  bytes[6] = 0x80;
  assert.throws(() => new FrameDecoder(() => undefined).push(bytes), (err) => isCleanroomError(err, "agent_protocol_error"));
});

test("a partial frame is reported as not at a boundary", () => {
  const decoder = new FrameDecoder(() => undefined);
  const bytes = encodeFrame(FrameType.DATA, 1, 1, Buffer.from("hello"));
  decoder.push(bytes.subarray(0, 5));
  assert.equal(decoder.atFrameBoundary, false);
  decoder.push(bytes.subarray(5, 14));
  assert.equal(decoder.atFrameBoundary, false);
  decoder.push(bytes.subarray(14));
  assert.equal(decoder.atFrameBoundary, true);
});
