import { open, type FileHandle } from "node:fs/promises";
import { EventEmitter, once } from "node:events";

export type OutputStream = "stdout" | "stderr";

export interface OutputChunk {
  stream: OutputStream;
  data: Uint8Array;
}

const HEADER_BYTES = 5;
const STREAM_TAG: Record<OutputStream, number> = { stdout: 1, stderr: 2 };
/** a record larger than this was not written by us: the file is damaged */
const MAX_RECORD_BYTES = 4 * 1024 * 1024;

/**
 * An execution's output on disk: records of [stream tag u8][length u32 BE][bytes], in arrival order,
 * so stdout and stderr replay interleaved as they happened. One writer (the running execution) and any
 * number of readers, which may follow the log while it grows.
 */
export class OutputLogWriter {
  readonly #file: FileHandle;
  readonly #changes = new EventEmitter();
  #committedBytes = 0;
  #closed = false;
  #queue: Promise<void> = Promise.resolve();

  private constructor(file: FileHandle) {
    this.#file = file;
    this.#changes.setMaxListeners(0);
  }

  static async create(path: string): Promise<OutputLogWriter> {
    return new OutputLogWriter(await open(path, "wx", 0o600));
  }

  get committedBytes(): number {
    return this.#committedBytes;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Appends one record; resolves once it is written, which is what paces the workload (backpressure). */
  append(stream: OutputStream, data: Uint8Array): Promise<void> {
    const record = Buffer.allocUnsafe(HEADER_BYTES + data.byteLength);
    record.writeUInt8(STREAM_TAG[stream], 0);
    record.writeUInt32BE(data.byteLength, 1);
    record.set(data, HEADER_BYTES);
    const write = this.#queue.then(async () => {
      await this.#file.write(record, 0, record.byteLength, this.#committedBytes);
      this.#committedBytes += record.byteLength;
      this.#changes.emit("change");
    });
    this.#queue = write.catch(() => undefined);
    return write;
  }

  async close(): Promise<void> {
    await this.#queue;
    if (this.#closed) return;
    this.#closed = true;
    await this.#file.close();
    this.#changes.emit("change");
  }

  /** Waits until more bytes are committed than `offset` or the log closes. */
  async waitBeyond(offset: number, signal?: AbortSignal): Promise<void> {
    while (this.#committedBytes <= offset && !this.#closed) {
      await once(this.#changes, "change", signal ? { signal } : {});
    }
  }
}

/**
 * Reads records from `path`. With `live`, keeps reading as the writer commits more, until it closes.
 * Yields chunks no larger than the records themselves.
 */
export async function* readOutputLog(
  path: string,
  live?: OutputLogWriter,
  signal?: AbortSignal,
): AsyncGenerator<OutputChunk> {
  const file = await open(path, "r");
  try {
    let offset = 0;
    let pending = Buffer.alloc(0);
    const buffer = Buffer.allocUnsafe(256 * 1024);
    for (;;) {
      const limit = live && !live.closed ? live.committedBytes : Number.MAX_SAFE_INTEGER;
      const want = Math.min(buffer.byteLength, limit - offset);
      const { bytesRead } = want > 0 ? await file.read(buffer, 0, want, offset) : { bytesRead: 0 };
      if (bytesRead > 0) {
        offset += bytesRead;
        pending = pending.byteLength ? Buffer.concat([pending, buffer.subarray(0, bytesRead)]) : Buffer.from(buffer.subarray(0, bytesRead));
        let start = 0;
        while (pending.byteLength - start >= HEADER_BYTES) {
          const tag = pending.readUInt8(start);
          const length = pending.readUInt32BE(start + 1);
          if ((tag !== 1 && tag !== 2) || length > MAX_RECORD_BYTES) throw new Error(`output log ${path} is damaged at byte ${offset}`);
          if (pending.byteLength - start < HEADER_BYTES + length) break;
          const data = pending.subarray(start + HEADER_BYTES, start + HEADER_BYTES + length);
          yield { stream: tag === 1 ? "stdout" : "stderr", data };
          start += HEADER_BYTES + length;
        }
        pending = pending.subarray(start);
        continue;
      }
      if (!live || live.closed) {
        // the writer may have closed between our read and this check: one last read settles it
        const after = await file.stat();
        if (after.size > offset) continue;
        return;
      }
      await live.waitBeyond(offset, signal);
    }
  } finally {
    await file.close();
  }
}

/** The last `maxBytes` of each stream, for inspect. */
export async function tailOutputLog(path: string, maxBytes: number): Promise<Record<OutputStream, Buffer>> {
  const kept: Record<OutputStream, Buffer[]> = { stdout: [], stderr: [] };
  const sizes: Record<OutputStream, number> = { stdout: 0, stderr: 0 };
  for await (const chunk of readOutputLog(path)) {
    kept[chunk.stream].push(Buffer.from(chunk.data));
    sizes[chunk.stream] += chunk.data.byteLength;
    while (kept[chunk.stream].length > 1 && sizes[chunk.stream] - kept[chunk.stream][0]!.byteLength >= maxBytes) {
      sizes[chunk.stream] -= kept[chunk.stream].shift()!.byteLength;
    }
  }
  const tail = (stream: OutputStream) => {
    const all = Buffer.concat(kept[stream]);
    return all.subarray(Math.max(0, all.byteLength - maxBytes));
  };
  return { stdout: tail("stdout"), stderr: tail("stderr") };
}
