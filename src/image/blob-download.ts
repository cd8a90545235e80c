import { createHash, type Hash } from "node:crypto";
import { createReadStream } from "node:fs";
import { open, readdir, rename, rm, stat, truncate } from "node:fs/promises";
import { join } from "node:path";
import { CleanroomError, isCleanroomError, messageOf } from "../errors/index.ts";
import type { Logger } from "../observability/index.ts";
import { digestMismatch, type BlobStore } from "./blob-store.ts";
import type { Descriptor } from "./manifest.ts";
import type { ImageRef } from "./ref.ts";
import type { RegistryClient } from "./registry-client.ts";
import { pidAlive, type StoreLayout } from "./store-layout.ts";

const MAX_ATTEMPTS = 4;
const IDLE_TIMEOUT_MS = 60_000;
const PROGRESS_INTERVAL_MS = 200;

export interface DownloadContext {
  client: RegistryClient;
  blobs: BlobStore;
  layout: StoreLayout;
  logger: Logger;
  signal?: AbortSignal;
  onBytes?: (receivedBytes: number, totalBytes: number) => void;
}

/**
 * The partial file for a blob: `tmp/<hex>.<pid>.partial`. A partial left by a process that died
 * is adopted (renamed to ours), so a crashed pull resumes where it stopped.
 */
async function claimPartial(layout: StoreLayout, hex: string): Promise<string> {
  const mine = join(layout.tmp, `${hex}.${process.pid}.partial`);
  const names = await readdir(layout.tmp).catch(() => [] as string[]);
  for (const name of names) {
    const m = /^([a-f0-9]{64})\.(\d+)\.partial$/.exec(name);
    if (!m || m[1] !== hex || Number(m[2]) === process.pid || pidAlive(Number(m[2]))) continue;
    try {
      await rename(join(layout.tmp, name), mine);
      break;
    } catch {
      // another process adopted it first
    }
  }
  return mine;
}

async function hashExisting(path: string, hash: Hash): Promise<number> {
  let size = 0;
  for await (const chunk of createReadStream(path) as AsyncIterable<Buffer>) {
    hash.update(chunk);
    size += chunk.length;
  }
  return size;
}

/** Downloads in this process, by store root and digest: they share one partial file, so they must share one download. */
const inFlight = new Map<string, Promise<void>>();

/** Downloads a blob into the store unless present: resumable (HTTP Range), sha256- and size-verified. */
export async function downloadBlob(ctx: DownloadContext, ref: ImageRef, desc: Descriptor): Promise<void> {
  const key = `${ctx.layout.root}|${desc.digest}`;
  let p = inFlight.get(key);
  if (!p) {
    p = downloadOnce(ctx, ref, desc).finally(() => inFlight.delete(key));
    inFlight.set(key, p);
  }
  return p;
}

async function downloadOnce(ctx: DownloadContext, ref: ImageRef, desc: Descriptor): Promise<void> {
  if (await ctx.blobs.has(desc.digest, desc.size)) return;
  const partial = await claimPartial(ctx.layout, desc.digest.slice(7));
  let lastError: unknown;
  let restartedClean = false;
  for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
    try {
      const outcome = await downloadAttempt(ctx, ref, desc, partial);
      if (outcome.digest === desc.digest) {
        await ctx.blobs.commitVerified(partial, desc.digest);
        return;
      }
      await rm(partial, { force: true });
      // a resumed partial may have been written by someone else; one clean retry before blaming the registry
      if (outcome.resumed && !restartedClean) {
        restartedClean = true;
        continue;
      }
      throw digestMismatch(`blob ${desc.digest}`, desc.digest, outcome.digest);
    } catch (e) {
      lastError = e;
      if (ctx.signal?.aborted) break;
      if (isCleanroomError(e) && e.code !== "registry_error") break;
      if (isCleanroomError(e) && /HTTP (4\d\d)/.test(e.message) && !/HTTP 429/.test(e.message)) break;
      ctx.logger.warn({ digest: desc.digest, attempt, err: messageOf(e) }, "blob download interrupted; resuming");
      await new Promise((r) => setTimeout(r, 200 * attempt));
    }
  }
  if (isCleanroomError(lastError) && lastError.code === "image_invalid") await rm(partial, { force: true });
  if (isCleanroomError(lastError)) throw lastError;
  throw new CleanroomError("registry_error", `downloading ${desc.digest} failed: ${messageOf(lastError)}`);
}

async function downloadAttempt(ctx: DownloadContext, ref: ImageRef, desc: Descriptor, partial: string): Promise<{ digest: string; resumed: boolean }> {
  const hash = createHash("sha256");
  let offset = await stat(partial).then((s) => s.size, () => 0);
  if (offset > desc.size) {
    await truncate(partial, 0);
    offset = 0;
  }
  if (offset > 0) offset = await hashExisting(partial, hash);
  if (offset === desc.size) return { digest: `sha256:${hash.digest("hex")}`, resumed: true };
  const headers: Record<string, string> = offset > 0 ? { range: `bytes=${offset}-` } : {};
  const { res, abort } = await ctx.client.open(ref, `blobs/${desc.digest}`, headers, ctx.signal);
  let resumed = offset > 0;
  let out: Hash = hash;
  if (res.status === 206 && offset > 0) {
    const m = /^bytes (\d+)-/.exec(res.headers.get("content-range") ?? "");
    if (!m || Number(m[1]) !== offset) {
      await res.body?.cancel().catch(() => {});
      await truncate(partial, 0);
      throw new CleanroomError("registry_error", `registry answered a range request for ${desc.digest} with the wrong range; retrying from the start`);
    }
  } else if (res.status === 200) {
    // the server ignored Range: start over
    if (offset > 0) await truncate(partial, 0);
    offset = 0;
    resumed = false;
    out = createHash("sha256");
  } else {
    throw await ctx.client.failure(res, `blob ${desc.digest}`);
  }
  const fh = await open(partial, "a", 0o600);
  let received = offset;
  let lastReport = 0;
  let idle = setTimeout(abort, IDLE_TIMEOUT_MS);
  try {
    if (!res.body) throw new CleanroomError("registry_error", `registry sent no body for ${desc.digest}`);
    for await (const value of res.body as AsyncIterable<Uint8Array>) {
      clearTimeout(idle);
      idle = setTimeout(abort, IDLE_TIMEOUT_MS);
      received += value.length;
      if (received > desc.size) {
        await truncate(partial, 0).catch(() => {});
        throw new CleanroomError("image_invalid", `blob ${desc.digest} is larger than its declared ${desc.size} bytes; the registry served wrong content`);
      }
      out.update(value);
      await fh.write(value);
      const now = Date.now();
      if (ctx.onBytes && now - lastReport >= PROGRESS_INTERVAL_MS) {
        lastReport = now;
        ctx.onBytes(received, desc.size);
      }
    }
    await fh.sync();
  } catch (e) {
    if (isCleanroomError(e)) throw e;
    throw new CleanroomError("registry_error", `download of ${desc.digest} broke off at ${received}/${desc.size} bytes: ${messageOf(e)}`);
  } finally {
    clearTimeout(idle);
    await fh.close();
  }
  ctx.onBytes?.(received, desc.size);
  if (received !== desc.size) {
    // a response that ended cleanly at its own Content-Length is complete: the registry serves the wrong blob
    const declared = res.headers.get("content-length");
    if (declared !== null && Number(declared) === received - offset) {
      await truncate(partial, 0).catch(() => {});
      throw new CleanroomError("image_invalid", `blob ${desc.digest} is ${received} bytes, its descriptor says ${desc.size}; the registry served wrong content — nothing was stored`);
    }
    throw new CleanroomError("registry_error", `download of ${desc.digest} ended at ${received}/${desc.size} bytes`);
  }
  return { digest: `sha256:${out.digest("hex")}`, resumed };
}
