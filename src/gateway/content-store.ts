/**
 * The gateway's transport cache: blobs by sha256 (verified while written, renamed into place only once
 * complete and checked), and an index from a route's cache key (a URL, a registry+repository+digest, …) to a blob.
 * Concurrent misses for one key share one upstream fetch.
 */
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { Transform } from "node:stream";
import type { ServerResponse } from "node:http";

export interface StoredObject {
  /** "sha256:<hex>" of the bytes */
  digest: string;
  sizeBytes: number;
  /** route data kept with the entry (content type, upstream ETag, …) */
  meta: Record<string, string>;
  storedAt: string;
}

/** An expected digest: OCI/Go/fetch give sha256 hex; npm's `integrity` gives sha512 (or sha1) base64. */
export interface ExpectedDigest {
  algorithm: "sha256" | "sha512" | "sha1";
  /** raw digest bytes */
  value: Buffer;
}

export class IntegrityMismatch extends Error {
  constructor(expected: ExpectedDigest, actual: Buffer) {
    super(`content does not match its ${expected.algorithm} digest (expected ${expected.value.toString("hex").slice(0, 16)}…, got ${actual.toString("hex").slice(0, 16)}…)`);
    this.name = "IntegrityMismatch";
  }
}

export class ObjectTooLarge extends Error {
  constructor(limitBytes: number) {
    super(`object larger than ${limitBytes} bytes`);
    this.name = "ObjectTooLarge";
  }
}

export class ContentStore {
  readonly #root: string;
  readonly #maxObjectBytes: number;
  readonly #inFlight = new Map<string, Promise<unknown>>();

  constructor(root: string, maxObjectBytes: number) {
    this.#root = root;
    this.#maxObjectBytes = maxObjectBytes;
  }

  async open(): Promise<void> {
    await rm(join(this.#root, "tmp"), { recursive: true, force: true }); // partial writes of a killed daemon
    await Promise.all(["blobs", "index", "tmp"].map((d) => mkdir(join(this.#root, d), { recursive: true, mode: 0o700 })));
  }

  /** The entry stored under `key`, if its blob is still present. */
  async lookup(key: string): Promise<StoredObject | undefined> {
    let entry: StoredObject;
    try {
      entry = JSON.parse(await readFile(this.#indexPath(key), "utf8")) as StoredObject;
    } catch {
      return undefined;
    }
    return (await this.hasBlob(entry.digest)) ? entry : undefined;
  }

  async hasBlob(digest: string): Promise<boolean> {
    try {
      return (await stat(this.blobPath(digest))).isFile();
    } catch {
      return false;
    }
  }

  blobPath(digest: string): string {
    const hex = /^sha256:([a-f0-9]{64})$/.exec(digest)?.[1];
    if (!hex) throw new Error(`not a sha256 digest: ${digest}`);
    return join(this.#root, "blobs", hex.slice(0, 2), hex);
  }

  /**
   * Writes `source` to a blob, computing its sha256 and checking `expected` (and the size limit) on the way.
   * Nothing lands in the store unless every check passed.
   */
  async ingest(source: AsyncIterable<Uint8Array> | NodeJS.ReadableStream, expected?: ExpectedDigest): Promise<{ digest: string; sizeBytes: number }> {
    const tmp = join(this.#root, "tmp", randomBytes(12).toString("hex"));
    const sha256 = createHash("sha256");
    const check = expected && expected.algorithm !== "sha256" ? createHash(expected.algorithm) : undefined;
    let sizeBytes = 0;
    const limit = this.#maxObjectBytes;
    const meter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        sizeBytes += chunk.length;
        if (sizeBytes > limit) return done(new ObjectTooLarge(limit));
        sha256.update(chunk);
        check?.update(chunk);
        done(null, chunk);
      },
    });
    try {
      await pipeline(source, meter, createWriteStream(tmp, { mode: 0o600 }));
      const hash = sha256.digest();
      if (expected) {
        const actual = check ? check.digest() : hash;
        if (!actual.equals(expected.value)) throw new IntegrityMismatch(expected, actual);
      }
      const digest = `sha256:${hash.toString("hex")}`;
      const path = this.blobPath(digest);
      await mkdir(join(path, ".."), { recursive: true, mode: 0o700 });
      await rename(tmp, path);
      return { digest, sizeBytes };
    } finally {
      await rm(tmp, { force: true });
    }
  }

  /** Points `key` at a stored blob (atomically replacing an older entry). */
  async record(key: string, object: Omit<StoredObject, "storedAt">): Promise<StoredObject> {
    const entry: StoredObject = { ...object, storedAt: new Date().toISOString() };
    const path = this.#indexPath(key);
    await mkdir(join(path, ".."), { recursive: true, mode: 0o700 });
    const tmp = join(this.#root, "tmp", randomBytes(12).toString("hex"));
    await writeFile(tmp, JSON.stringify(entry), { mode: 0o600 });
    await rename(tmp, path);
    return entry;
  }

  /** Runs `fill` once for concurrent callers of the same key. */
  once<T>(key: string, fill: () => Promise<T>): Promise<T> {
    const running = this.#inFlight.get(key) as Promise<T> | undefined;
    if (running) return running;
    const started = fill().finally(() => this.#inFlight.delete(key));
    this.#inFlight.set(key, started);
    return started;
  }

  /** Sends a stored blob as the response body (headers only for HEAD); returns the bytes sent. */
  async send(res: ServerResponse, object: StoredObject, headers: Record<string, string>, head: boolean): Promise<number> {
    res.writeHead(200, { ...headers, "content-length": String(object.sizeBytes) });
    if (head) {
      res.end();
      return 0;
    }
    // 1 MiB reads: with the default 64 KiB a large blob costs the daemon four times the syscalls and event-loop turns
    const source = createReadStream(this.blobPath(object.digest), { highWaterMark: 1 << 20 });
    try {
      await pipeline(source, res);
    } catch (err) {
      // a client that hangs up once it has Content-Length bytes may do so before the file's end-of-stream read
      // returns and the response is ended: every byte was handed over, so that is a success, not a failure
      if (source.bytesRead !== object.sizeBytes) throw err;
    }
    return object.sizeBytes;
  }

  #indexPath(key: string): string {
    const hex = createHash("sha256").update(key).digest("hex");
    return join(this.#root, "index", hex.slice(0, 2), `${hex}.json`);
  }
}
