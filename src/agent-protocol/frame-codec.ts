import { CleanroomError } from "../errors/index.ts";

/** Bytes in every frame header: u32 length, u8 type, u8 stream, u16 flags (0), u32 channel; big-endian. */
export const FRAME_HEADER_BYTES = 12;
/** A frame declaring a longer payload is a protocol error; nothing of that size is ever allocated. */
export const MAX_FRAME_PAYLOAD_BYTES = 1024 * 1024;
/** DATA payloads we send stay at or below this so a whole frame fits one 64 KiB socket read. */
export const MAX_DATA_PAYLOAD_BYTES = 65536 - FRAME_HEADER_BYTES;
/** Credit each stream (stdin, stdout, stderr) of an exec starts with. */
export const INITIAL_WINDOW_BYTES = 256 * 1024;

/** Frame types of protocol version 1 (PROTOCOL.md). */
export const FrameType = {
  HELLO: 0x01,
  PING: 0x02,
  PONG: 0x03,
  ERROR: 0x04,
  EXEC: 0x10,
  EXIT: 0x11,
  SIGNAL: 0x12,
  RESIZE: 0x13,
  DATA: 0x20,
  EOF: 0x21,
  WINDOW: 0x22,
} as const;
export type FrameTypeCode = (typeof FrameType)[keyof typeof FrameType];

/** Streams of an exec channel. */
export const Stream = { STDIN: 0, STDOUT: 1, STDERR: 2 } as const;

export interface Frame {
  type: number;
  stream: number;
  channel: number;
  payload: Buffer;
}

function protocolError(message: string): CleanroomError {
  return new CleanroomError("agent_protocol_error", `agent protocol error: ${message}`);
}

function writeHeader(target: Buffer, type: number, stream: number, channel: number, payloadBytes: number): void {
  target.writeUInt32BE(payloadBytes, 0);
  target[4] = type;
  target[5] = stream;
  target.writeUInt16BE(0, 6);
  target.writeUInt32BE(channel, 8);
}

/** Encodes one frame into a single buffer (header + payload). */
export function encodeFrame(type: number, stream: number, channel: number, payload?: Uint8Array): Buffer {
  const length = payload?.byteLength ?? 0;
  if (length > MAX_FRAME_PAYLOAD_BYTES) throw new RangeError(`frame payload of ${length} bytes exceeds ${MAX_FRAME_PAYLOAD_BYTES}`);
  const out = Buffer.allocUnsafe(FRAME_HEADER_BYTES + length);
  writeHeader(out, type, stream, channel, length);
  if (payload && length > 0) out.set(payload, FRAME_HEADER_BYTES);
  return out;
}

/** Encodes a control frame whose payload is `value` as JSON. */
export function encodeJsonFrame(type: number, stream: number, channel: number, value: unknown): Buffer {
  return encodeFrame(type, stream, channel, Buffer.from(JSON.stringify(value), "utf8"));
}

/**
 * Incremental decoder for a byte stream of frames. Payloads of frames that arrive whole are views into
 * the pushed chunk (no copy); a frame split across chunks is assembled in one buffer of its declared
 * size, allocated only after that size was checked. Throws CleanroomError("agent_protocol_error").
 */
export class FrameDecoder {
  readonly #onFrame: (frame: Frame) => void;
  readonly #header = Buffer.alloc(FRAME_HEADER_BYTES);
  #headerFill = 0;
  #pending: Frame | undefined; // header parsed, payload incomplete
  #payloadFill = 0;
  #failed = false;

  constructor(onFrame: (frame: Frame) => void) {
    this.#onFrame = onFrame;
  }

  /** True when no partial frame is buffered: the stream may end here cleanly. */
  get atFrameBoundary(): boolean {
    return this.#headerFill === 0 && this.#pending === undefined;
  }

  push(chunk: Buffer): void {
    if (this.#failed) throw protocolError("decoder used after an error");
    try {
      this.#consume(chunk);
    } catch (err) {
      this.#failed = true;
      throw err;
    }
  }

  #consume(chunk: Buffer): void {
    let offset = 0;
    while (offset < chunk.length) {
      const pending = this.#pending;
      if (pending) {
        const take = Math.min(pending.payload.length - this.#payloadFill, chunk.length - offset);
        chunk.copy(pending.payload, this.#payloadFill, offset, offset + take);
        this.#payloadFill += take;
        offset += take;
        if (this.#payloadFill === pending.payload.length) {
          this.#pending = undefined;
          this.#onFrame(pending);
        }
        continue;
      }
      let header: Buffer;
      let headerAt: number;
      if (this.#headerFill === 0 && chunk.length - offset >= FRAME_HEADER_BYTES) {
        header = chunk;
        headerAt = offset;
        offset += FRAME_HEADER_BYTES;
      } else {
        const take = Math.min(FRAME_HEADER_BYTES - this.#headerFill, chunk.length - offset);
        chunk.copy(this.#header, this.#headerFill, offset, offset + take);
        this.#headerFill += take;
        offset += take;
        if (this.#headerFill < FRAME_HEADER_BYTES) return;
        this.#headerFill = 0;
        header = this.#header;
        headerAt = 0;
      }
      const length = header.readUInt32BE(headerAt);
      if (length > MAX_FRAME_PAYLOAD_BYTES) throw protocolError(`frame declares ${length} payload bytes; the limit is ${MAX_FRAME_PAYLOAD_BYTES}`);
      if (header.readUInt16BE(headerAt + 6) !== 0) throw protocolError("frame flags must be zero");
      const type = header[headerAt + 4]!;
      const stream = header[headerAt + 5]!;
      const channel = header.readUInt32BE(headerAt + 8);
      if (chunk.length - offset >= length) {
        const payload = chunk.subarray(offset, offset + length);
        offset += length;
        this.#onFrame({ type, stream, channel, payload });
      } else {
        this.#pending = { type, stream, channel, payload: Buffer.allocUnsafe(length) };
        this.#payloadFill = 0;
      }
    }
  }
}
