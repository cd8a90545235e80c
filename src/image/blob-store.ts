import { createHash } from "node:crypto";
import { chmod, open, readFile, rename, rm, stat } from "node:fs/promises";
import { CleanroomError } from "../errors/index.ts";
import { writeFileAtomic, type StoreLayout } from "./store-layout.ts";

export function sha256Digest(bytes: Buffer | string): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

export function digestMismatch(what: string, expected: string, actual: string): CleanroomError {
  return new CleanroomError(
    "image_invalid",
    `${what}: content digest ${actual} does not match the expected ${expected}; the registry or archive served corrupt or tampered content — nothing was stored, retry or check the source`,
    { expected, actual },
  );
}

/** Content-addressed blobs under blobs/sha256/<hex>; every write is verified and atomic. */
export class BlobStore {
  private readonly layout: StoreLayout;
  constructor(layout: StoreLayout) {
    this.layout = layout;
  }

  tempPath(prefix: string): string {
    return this.layout.tempPath(prefix);
  }

  path(digest: string): string {
    return this.layout.blobPath(digest);
  }

  async has(digest: string, sizeBytes?: number): Promise<boolean> {
    try {
      const s = await stat(this.path(digest));
      return s.isFile() && (sizeBytes === undefined || s.size === sizeBytes);
    } catch {
      return false;
    }
  }

  /** Reads a small blob and re-verifies it (cheap for manifests/configs, and catches on-disk corruption). */
  async readVerified(digest: string, maxBytes: number): Promise<Buffer> {
    const s = await stat(this.path(digest));
    if (s.size > maxBytes) throw new CleanroomError("image_invalid", `blob ${digest} is ${s.size} bytes, more than ${maxBytes}`);
    const bytes = await readFile(this.path(digest));
    const actual = sha256Digest(bytes);
    if (actual !== digest) {
      await rm(this.path(digest), { force: true });
      throw digestMismatch("stored blob", digest, actual);
    }
    return bytes;
  }

  /** Stores bytes under their digest, which must equal `expected` when given. */
  async putBytes(bytes: Buffer, expected?: string): Promise<string> {
    const digest = sha256Digest(bytes);
    if (expected !== undefined && digest !== expected) throw digestMismatch("blob", expected, digest);
    if (!(await this.has(digest, bytes.length))) await writeFileAtomic(this.path(digest), bytes, 0o644);
    return digest;
  }

  /**
   * Streams `source` into the store, verifying size and digest before the blob becomes visible.
   * On any mismatch the temp file is removed and nothing is stored.
   */
  async ingest(source: AsyncIterable<Buffer>, expected: { digest: string; sizeBytes: number }, onBytes?: (n: number) => void): Promise<void> {
    const tmp = this.layout.tempPath(`ingest-${expected.digest.slice(7, 19)}`);
    const hash = createHash("sha256");
    let size = 0;
    const fh = await open(tmp, "wx", 0o600);
    let ok = false;
    try {
      for await (const chunk of source) {
        size += chunk.length;
        if (size > expected.sizeBytes) throw new CleanroomError("image_invalid", `blob ${expected.digest} is larger than its declared ${expected.sizeBytes} bytes`);
        hash.update(chunk);
        await fh.write(chunk);
        onBytes?.(size);
      }
      if (size !== expected.sizeBytes) throw new CleanroomError("image_invalid", `blob ${expected.digest} has ${size} bytes, its descriptor says ${expected.sizeBytes}`);
      const actual = `sha256:${hash.digest("hex")}`;
      if (actual !== expected.digest) throw digestMismatch("blob", expected.digest, actual);
      await fh.sync();
      ok = true;
    } finally {
      await fh.close();
      if (!ok) await rm(tmp, { force: true });
    }
    await this.commit(tmp);
    await rename(tmp, this.path(expected.digest));
  }

  /** Moves a verified file into place (callers verified its digest). */
  async commitVerified(file: string, digest: string): Promise<void> {
    await this.commit(file);
    await rename(file, this.path(digest));
  }

  private async commit(file: string): Promise<void> {
    await chmod(file, 0o644);
  }
}
