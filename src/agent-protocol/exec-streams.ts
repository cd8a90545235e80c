import { Readable, Writable } from "node:stream";
import { INITIAL_WINDOW_BYTES, MAX_DATA_PAYLOAD_BYTES } from "./frame-codec.ts";
import { ByteQueue } from "./byte-queue.ts";
import { protocolError } from "./control-messages.ts";

/** Credit is returned in batches of at least this much (or all of it when the agent runs low and the queue is empty). */
const CREDIT_BATCH_BYTES = INITIAL_WINDOW_BYTES / 4;
const OUTPUT_HIGH_WATER_MARK = 64 * 1024;

/**
 * One output stream of a process (stdout or stderr). Bytes the agent sends wait in a queue until the
 * consumer asks for them (`_read`); only then is their credit returned, so a consumer that stops reading
 * stops the agent, which stops reading the pipe, which blocks the workload. Buffered bytes are bounded by
 * the window plus the Readable's own high-water mark.
 */
export class AgentOutputStream extends Readable {
  readonly #returnCredit: (bytes: number) => void;
  readonly #queue = new ByteQueue();
  #agentCredit = INITIAL_WINDOW_BYTES; // what the agent may still send
  #unreturned = 0; // consumed, not yet returned
  #wantsData = false;
  #eofReceived = false;
  readonly #name: string;

  constructor(name: string, returnCredit: (bytes: number) => void) {
    super({ highWaterMark: OUTPUT_HIGH_WATER_MARK });
    this.#name = name;
    this.#returnCredit = returnCredit;
  }

  /** Bytes held on the host for this stream: queued plus inside the Readable buffer. */
  get bufferedBytes(): number {
    return this.#queue.bytes + this.readableLength;
  }

  /** A DATA frame from the agent. Throws agent_protocol_error when it exceeds the credit. */
  receive(payload: Buffer): void {
    if (this.#eofReceived) throw protocolError(`${this.#name} DATA after EOF`);
    if (payload.length === 0) throw protocolError(`empty ${this.#name} DATA frame`);
    if (payload.length > this.#agentCredit) throw protocolError(`${this.#name} DATA exceeds the granted credit`);
    this.#agentCredit -= payload.length;
    if (this.destroyed) {
      this.#consumed(payload.length); // nobody will read it; keep the workload moving
      return;
    }
    this.#queue.push(payload);
    if (this.#wantsData) this.#drain();
  }

  /** EOF from the agent (or the channel ended): the stream ends once the queue is consumed. */
  finish(): void {
    if (this.#eofReceived) return;
    this.#eofReceived = true;
    if (this.#queue.empty && !this.destroyed) this.push(null);
  }

  override _read(): void {
    this.#wantsData = true;
    this.#drain();
    if (this.#queue.empty && this.#eofReceived) this.push(null);
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    const dropped = this.#queue.bytes;
    this.#queue.clear();
    if (dropped > 0) this.#consumed(dropped);
    callback(err);
  }

  /** Hands queued bytes to the Readable while its consumer wants more; that is when credit goes back. */
  #drain(): void {
    while (this.#wantsData) {
      const chunk = this.#queue.shift();
      if (!chunk) return;
      this.#wantsData = this.push(chunk);
      this.#consumed(chunk.length);
    }
  }

  #consumed(bytes: number): void {
    this.#unreturned += bytes;
    if (this.#eofReceived) return; // the agent sends nothing more; credit would be wasted
    // Batching is deadlock-free: when the agent is out of credit, everything not queued is unreturned.
    if (this.#unreturned >= CREDIT_BATCH_BYTES || (this.#queue.empty && this.#agentCredit < CREDIT_BATCH_BYTES)) {
      const credit = this.#unreturned;
      this.#unreturned = 0;
      this.#agentCredit += credit;
      this.#returnCredit(credit);
    }
  }
}

/**
 * The stdin of a process. Writes never exceed the credit the agent granted; a write whose bytes wait for
 * credit holds its callback, which is Writable's backpressure. After the process ends, writes are dropped.
 */
export class AgentInputStream extends Writable {
  readonly #sendData: (chunk: Buffer) => void;
  readonly #sendEof: () => void;
  #credit = INITIAL_WINDOW_BYTES;
  #pending: { chunk: Buffer; offset: number; callback: (error?: Error | null) => void } | undefined;
  #gone = false;
  #eofSent = false;

  constructor(sendData: (chunk: Buffer) => void, sendEof: () => void) {
    super({ highWaterMark: 64 * 1024 });
    this.#sendData = sendData;
    this.#sendEof = sendEof;
  }

  /** WINDOW from the agent. Throws agent_protocol_error if it would exceed the window. */
  addCredit(bytes: number): void {
    if (this.#credit + bytes > INITIAL_WINDOW_BYTES) throw protocolError("stdin WINDOW exceeds the window");
    this.#credit += bytes;
    this.#pump();
  }

  /** The process ended or the connection died: release a waiting write, drop what follows. */
  abandon(): void {
    this.#gone = true;
    const pending = this.#pending;
    this.#pending = undefined;
    pending?.callback();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.#gone || chunk.length === 0) {
      callback();
      return;
    }
    this.#pending = { chunk, offset: 0, callback };
    this.#pump();
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.#endInput();
    callback();
  }

  /** Destroying stdin closes it too, so the workload sees EOF rather than waiting forever. */
  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.#endInput();
    this.abandon();
    callback(err);
  }

  #endInput(): void {
    if (this.#gone || this.#eofSent) return;
    this.#eofSent = true;
    this.#sendEof();
  }

  #pump(): void {
    const pending = this.#pending;
    if (!pending || this.#gone) return;
    while (this.#credit > 0 && pending.offset < pending.chunk.length) {
      const size = Math.min(this.#credit, MAX_DATA_PAYLOAD_BYTES, pending.chunk.length - pending.offset);
      this.#sendData(pending.chunk.subarray(pending.offset, pending.offset + size));
      pending.offset += size;
      this.#credit -= size;
    }
    if (pending.offset === pending.chunk.length) {
      this.#pending = undefined;
      pending.callback();
    }
  }
}
