// The fallback's daemon log: appended by the supervisor, bounded by rotation (one old file kept), read back by
// `daemon logs` (last lines, and following across a rotation).
import { closeSync, fstatSync, mkdirSync, openSync, readFileSync, readSync, renameSync, statSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

/** Rotate past 10 MiB: the log and its one predecessor stay under ~20 MiB. */
export const LOG_MAX_BYTES = 10 * 1024 * 1024;

/** Appends to `path`; when a write would take it past `maxBytes`, the file becomes `path.1` and a new one starts. */
export class RotatingLog {
  readonly path: string;
  readonly maxBytes: number;
  #fd: number;
  #sizeBytes: number;

  constructor(path: string, maxBytes: number = LOG_MAX_BYTES) {
    this.path = path;
    this.maxBytes = maxBytes;
    mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
    this.#fd = openSync(path, "a", 0o640);
    this.#sizeBytes = fstatSync(this.#fd).size;
  }

  append(text: string | Buffer): void {
    const bytes = typeof text === "string" ? Buffer.from(text) : text;
    if (this.#sizeBytes > 0 && this.#sizeBytes + bytes.length > this.maxBytes) this.#rotate();
    writeSync(this.#fd, bytes);
    this.#sizeBytes += bytes.length;
  }

  close(): void {
    closeSync(this.#fd);
  }

  #rotate(): void {
    closeSync(this.#fd);
    renameSync(this.path, `${this.path}.1`);
    this.#fd = openSync(this.path, "a", 0o640);
    this.#sizeBytes = 0;
  }
}

/**
 * Splits a stream's chunks into whole lines for `write`, so that lines of two streams sharing a log do not
 * interleave mid-line; a line longer than `maxLineBytes` is written in pieces rather than held.
 */
export class LineSplitter {
  readonly #write: (line: Buffer) => void;
  readonly #maxLineBytes: number;
  #pending: Buffer = Buffer.alloc(0);

  constructor(write: (line: Buffer) => void, maxLineBytes = 64 * 1024) {
    this.#write = write;
    this.#maxLineBytes = maxLineBytes;
  }

  push(chunk: Buffer): void {
    let data = this.#pending.length ? Buffer.concat([this.#pending, chunk]) : chunk;
    for (let newline = data.indexOf(10); newline >= 0; newline = data.indexOf(10)) {
      this.#write(data.subarray(0, newline + 1));
      data = data.subarray(newline + 1);
    }
    if (data.length > this.#maxLineBytes) {
      this.#write(Buffer.concat([data, Buffer.from("\n")]));
      data = Buffer.alloc(0);
    }
    this.#pending = Buffer.from(data);
  }

  /** writes what is left of an unfinished last line */
  flush(): void {
    if (this.#pending.length) this.#write(Buffer.concat([this.#pending, Buffer.from("\n")]));
    this.#pending = Buffer.alloc(0);
  }
}

/** The last `count` lines of the log, reaching into `path.1` when the current file holds fewer. */
export function lastLogLines(path: string, count: number): string[] {
  if (count <= 0) return [];
  const lines = linesOf(path);
  if (lines.length < count) lines.unshift(...linesOf(`${path}.1`));
  return lines.slice(-count);
}

/**
 * Writes what is appended to the log from now on, following it into the new file after a rotation, until
 * `signal` aborts. Polls (inotify would miss nothing more, and this stays simple across renames).
 */
export async function followLog(path: string, write: (chunk: Buffer) => void, signal?: AbortSignal, pollMs = 200): Promise<void> {
  let fd = openIfExists(path);
  let position = fd === undefined ? 0 : fstatSync(fd).size;
  const buffer = Buffer.alloc(64 * 1024);
  while (!signal?.aborted) {
    if (fd !== undefined) {
      for (let read = readSync(fd, buffer, 0, buffer.length, position); read > 0; read = readSync(fd, buffer, 0, buffer.length, position)) {
        write(Buffer.from(buffer.subarray(0, read)));
        position += read;
      }
    }
    const current = statIfExists(path);
    const replaced = current !== undefined && (fd === undefined || current.ino !== fstatSync(fd).ino);
    if (replaced) {
      // rotated (or created): what the old file still held was read above; carry on at the new file's start
      if (fd !== undefined) closeSync(fd);
      fd = openIfExists(path);
      position = 0;
      continue;
    }
    if (current && current.size < position) position = 0; // truncated by hand
    await sleep(pollMs, undefined, { signal }).catch(() => undefined);
  }
  if (fd !== undefined) closeSync(fd);
}

function linesOf(path: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  return lines;
}

function openIfExists(path: string): number | undefined {
  try {
    return openSync(path, "r");
  } catch {
    return undefined;
  }
}

function statIfExists(path: string): { ino: number; size: number } | undefined {
  try {
    return statSync(path);
  } catch {
    return undefined;
  }
}
