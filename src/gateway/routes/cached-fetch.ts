/**
 * The common path of cacheable routes: serve `key` from the content store, or fetch it upstream once (however
 * many sandboxes ask at the same time), verify it, store it and then serve it. Nothing unverified reaches a guest.
 */
import type { ServerResponse } from "node:http";
import type { ExpectedDigest, StoredObject } from "../content-store.ts";
import { upstreamError } from "../refusal.ts";
import type { GatewayContext } from "../route.ts";
import type { UpstreamRequest } from "../upstream-client.ts";
import type { GatewayCaller } from "../types.ts";

export interface CachedFetch {
  /** content-store key; include everything that changes the bytes (URL, Accept variant, repository scope) */
  key: string;
  url: URL;
  request?: UpstreamRequest;
  expected?: ExpectedDigest;
  /** response headers to keep with the entry and send on hits (lowercase names) */
  keepHeaders?: readonly string[];
  /** checks the stored bytes (e.g. a Go module zip's file names) before the key points at them; throw to refuse */
  verify?: (blobPath: string) => Promise<void>;
}

export type CachedResult =
  | { kind: "stored"; object: StoredObject; fromCache: boolean }
  /** the upstream answered something other than 200: nothing was stored */
  | { kind: "upstream_status"; status: number; headers: Record<string, string>; body: string };

/** how much of an upstream error answer (a 404 page, a registry error JSON) is kept and passed on */
export const STATUS_BODY_BYTES = 16 * 1024;

/** Looks `key` up, else fetches, verifies and stores it. Throws GatewayRefusal (host_not_allowed, upstream_error). */
export async function cachedFetch(ctx: GatewayContext, caller: GatewayCaller, f: CachedFetch): Promise<CachedResult> {
  const hit = await ctx.store.lookup(f.key);
  if (hit) {
    if (f.expected && f.expected.algorithm === "sha256" && hit.digest !== `sha256:${f.expected.value.toString("hex")}`) {
      throw upstreamError(`refused: cached content for this URL does not match the requested digest`, f.url.host);
    }
    return { kind: "stored", object: hit, fromCache: true };
  }
  return ctx.store.once(f.key, async (): Promise<CachedResult> => {
    const res = await ctx.upstream.fetch(caller, f.url, f.request);
    const headers = pickHeaders(res.headers, f.keepHeaders ?? ["content-type"]);
    if (res.status !== 200) {
      const body = await readBounded(res.body, STATUS_BODY_BYTES);
      return { kind: "upstream_status", status: res.status, headers, body };
    }
    const { digest, sizeBytes } = await ctx.store.ingest(res.body, f.expected);
    await f.verify?.(ctx.store.blobPath(digest));
    const object = await ctx.store.record(f.key, { digest, sizeBytes, meta: headers });
    return { kind: "stored", object, fromCache: false };
  });
}

/** Sends a CachedResult to the guest; returns status and bytes for the audit event. */
export async function sendCached(
  ctx: GatewayContext,
  res: ServerResponse,
  result: CachedResult,
  head: boolean,
  extraHeaders: Record<string, string> = {},
): Promise<{ status: number; bytes: number }> {
  if (result.kind === "upstream_status") {
    const body = head ? "" : result.body;
    res.writeHead(result.status, { ...result.headers, "content-length": String(Buffer.byteLength(body)) }).end(body);
    return { status: result.status, bytes: Buffer.byteLength(body) };
  }
  const headers = { ...result.object.meta, ...extraHeaders, "x-cleanroom-digest": result.object.digest };
  return { status: 200, bytes: await ctx.store.send(res, result.object, headers, head) };
}

/** Reads at most `limit` bytes of a body as text and discards the rest. */
export async function readBounded(body: AsyncIterable<Uint8Array> & { dump?: () => Promise<void> }, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    if (size < limit) chunks.push(Buffer.from(chunk).subarray(0, limit - size));
    size += chunk.length;
  }
  return Buffer.concat(chunks).toString("utf8");
}

export function pickHeaders(headers: Record<string, string | string[] | undefined>, names: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of names) {
    const value = headers[name];
    if (typeof value === "string") out[name] = value;
  }
  return out;
}
