import { Transform, type TransformCallback } from "node:stream";
import { protocolError } from "./control-messages.ts";

const HIGH_WATER_MARK_BYTES = 64 * 1024;

/**
 * read's output: a header line of at most maxHeaderBytes, then exactly the number of bytes the header
 * promises (what parseHeader returns). Only the content comes out. The stream ends once the helper has
 * exited 0 (`succeeded`), and errors instead when it failed or sent more or fewer bytes than promised.
 */
export class ReadContentStream<Header> extends Transform {
  /** settles when the header is parsed, or with the error that came first */
  readonly header: Promise<Header>;
  readonly #parseHeader: (line: Buffer) => { header: Header; contentBytes: number };
  readonly #succeeded: Promise<void>;
  readonly #maxHeaderBytes: number;
  #headerChunks: Buffer[] = [];
  #headerBytes = 0;
  #expectedBytes = -1; // -1 until the header is parsed
  #receivedBytes = 0;
  #resolveHeader!: (header: Header) => void;
  #rejectHeader!: (err: Error) => void;

  constructor(parseHeader: (line: Buffer) => { header: Header; contentBytes: number }, succeeded: Promise<void>, maxHeaderBytes: number) {
    super({ highWaterMark: HIGH_WATER_MARK_BYTES });
    this.#parseHeader = parseHeader;
    this.#succeeded = succeeded;
    this.#maxHeaderBytes = maxHeaderBytes;
    this.header = new Promise<Header>((resolve, reject) => {
      this.#resolveHeader = resolve;
      this.#rejectHeader = reject;
    });
    this.header.catch(() => undefined);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      const content = this.#expectedBytes < 0 ? this.#takeHeader(chunk) : chunk;
      if (content.length === 0) return callback();
      this.#receivedBytes += content.length;
      if (this.#receivedBytes > this.#expectedBytes) throw protocolError(`the file helper sent more than the ${this.#expectedBytes} bytes it promised`);
      callback(null, content);
    } catch (err) {
      callback(err as Error);
    }
  }

  override _flush(callback: TransformCallback): void {
    this.#succeeded.then(() => {
      if (this.#expectedBytes < 0) return callback(protocolError("the file helper's read output has no header"));
      if (this.#receivedBytes !== this.#expectedBytes) {
        return callback(protocolError(`the file helper sent ${this.#receivedBytes} of the ${this.#expectedBytes} bytes it promised`));
      }
      callback();
    }, (err: Error) => callback(err));
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.#rejectHeader(err ?? protocolError("the read ended before its header"));
    callback(err);
  }

  /** Collects header bytes; once the newline is in, parses the header and returns the content after it. */
  #takeHeader(chunk: Buffer): Buffer {
    const nl = chunk.indexOf(10);
    const part = nl < 0 ? chunk : chunk.subarray(0, nl);
    this.#headerBytes += part.length;
    if (this.#headerBytes > this.#maxHeaderBytes) throw protocolError(`the file helper's read header exceeds ${this.#maxHeaderBytes} bytes`);
    this.#headerChunks.push(part);
    if (nl < 0) return Buffer.alloc(0);
    const { header, contentBytes } = this.#parseHeader(Buffer.concat(this.#headerChunks));
    this.#headerChunks = [];
    this.#expectedBytes = contentBytes;
    this.#resolveHeader(header);
    return chunk.subarray(nl + 1);
  }
}

/**
 * archive's tar stream, passed through as it is with a bound on its size; it ends once the helper has
 * exited 0 and errors when the helper failed.
 */
export class BoundedOutputStream extends Transform {
  readonly #maxBytes: number;
  readonly #succeeded: Promise<void>;
  #bytes = 0;

  constructor(maxBytes: number, succeeded: Promise<void>) {
    super({ highWaterMark: HIGH_WATER_MARK_BYTES });
    this.#maxBytes = maxBytes;
    this.#succeeded = succeeded;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#bytes += chunk.length;
    if (this.#bytes > this.#maxBytes) return callback(protocolError(`the file helper's output exceeds ${this.#maxBytes} bytes`));
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    this.#succeeded.then(() => callback(), (err: Error) => callback(err));
  }
}
