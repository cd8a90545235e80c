import { constants } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { maxRecordBytes } from "./drop-log.ts";

/** Records read per poll at most; what the kernel keeps beyond that waits for the next poll (or is overwritten). */
const maxRecordsPerPoll = 2000;

export interface KernelLogReader {
  /** Reads what the kernel has logged so far now, instead of at the next poll. */
  readNow(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Follows /dev/kmsg (root) from now on, calling `onRecord` with each raw record. The file is opened
 * non-blocking and polled: a blocking read would pin a libuv thread for good. Each read returns one record;
 * EPIPE means the kernel overwrote records we had not read yet, and reading simply goes on.
 */
export async function followKernelLog(onRecord: (raw: string) => void, opts: { pollMs?: number; path?: string } = {}): Promise<KernelLogReader> {
  const file = await open(opts.path ?? "/dev/kmsg", constants.O_RDONLY | constants.O_NONBLOCK);
  const buf = Buffer.alloc(maxRecordBytes * 2);
  let closed = false;
  let polling: Promise<void> = Promise.resolve();

  // skip what is already in the buffer: events are for packets dropped from now on
  await drain(file, buf, () => {}, 1_000_000);

  const poll = () => {
    polling = polling.then(() => (closed ? undefined : drain(file, buf, onRecord, maxRecordsPerPoll))).catch(() => {});
    return polling;
  };
  const timer = setInterval(() => {
    if (!closed) void poll();
  }, opts.pollMs ?? 200);
  timer.unref();

  return {
    readNow: () => (closed ? Promise.resolve() : poll()),
    close: async () => {
      if (closed) return;
      closed = true;
      clearInterval(timer);
      await polling;
      await file.close();
    },
  };
}

async function drain(file: FileHandle, buf: Buffer, onRecord: (raw: string) => void, max: number): Promise<void> {
  for (let n = 0; n < max; n++) {
    let bytes: number;
    try {
      ({ bytesRead: bytes } = await file.read(buf, 0, buf.length, null));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "EPIPE") continue;
      if (code === "EAGAIN" || code === "EWOULDBLOCK") return;
      throw err;
    }
    if (bytes === 0) return;
    onRecord(buf.toString("utf8", 0, bytes));
  }
}
