/** Payloads below this are copied into a shared slab instead of being queued as their own buffers. */
const SMALL_PAYLOAD_BYTES = 4 * 1024;
const SLAB_BYTES = 16 * 1024;

/**
 * FIFO of byte chunks whose memory stays proportional to the bytes it holds: a hostile peer sending
 * one-byte frames fills slabs, not a quarter of a million Buffer objects each pinning a socket read.
 */
export class ByteQueue {
  #chunks: Buffer[] = [];
  #head = 0;
  #bytes = 0;
  #slab: Buffer | undefined;
  #slabStart = 0; // start of the open (not yet queued) segment
  #slabFill = 0;

  get bytes(): number {
    return this.#bytes;
  }

  get empty(): boolean {
    return this.#bytes === 0;
  }

  push(payload: Buffer): void {
    this.#bytes += payload.length;
    if (payload.length >= SMALL_PAYLOAD_BYTES) {
      this.#closeSegment();
      this.#chunks.push(payload);
      return;
    }
    if (!this.#slab || this.#slab.length - this.#slabFill < payload.length) {
      this.#closeSegment();
      this.#slab = Buffer.allocUnsafe(SLAB_BYTES);
      this.#slabStart = this.#slabFill = 0;
    }
    payload.copy(this.#slab, this.#slabFill);
    this.#slabFill += payload.length;
  }

  /** The oldest chunk, or undefined when empty. */
  shift(): Buffer | undefined {
    if (this.#head === this.#chunks.length) this.#closeSegment();
    if (this.#head === this.#chunks.length) return undefined;
    const chunk = this.#chunks[this.#head]!;
    this.#chunks[this.#head++] = undefined as unknown as Buffer;
    if (this.#head === this.#chunks.length) {
      this.#chunks = [];
      this.#head = 0;
    }
    this.#bytes -= chunk.length;
    return chunk;
  }

  clear(): void {
    this.#chunks = [];
    this.#head = 0;
    this.#bytes = 0;
    this.#slab = undefined;
    this.#slabStart = this.#slabFill = 0;
  }

  #closeSegment(): void {
    if (this.#slab && this.#slabFill > this.#slabStart) {
      this.#chunks.push(this.#slab.subarray(this.#slabStart, this.#slabFill));
      this.#slabStart = this.#slabFill;
    }
  }
}
