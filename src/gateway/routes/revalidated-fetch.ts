/**
 * Upstream documents that change (Go's @v/list and @latest, the RubyGems compact index): served from the content
 * store while younger than `maxAgeMs`, then fetched again, revalidated with the stored ETag when there is one.
 * When the upstream cannot be reached (or fails with 5xx) the last good copy is served, so a flaky upstream does
 * not break a warm sandbox; a policy refusal is never papered over that way.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { StoredObject } from "../content-store.ts";
import { GatewayRefusal } from "../refusal.ts";
import type { GatewayContext } from "../route.ts";
import type { GatewayCaller } from "../types.ts";
import type { UpstreamRequest, UpstreamResponse } from "../upstream-client.ts";
import { pickHeaders, readBounded, sendCached, STATUS_BODY_BYTES, type CachedResult } from "./cached-fetch.ts";

export interface RevalidatedFetch {
  /** content-store key; distinct from any immutable key for the same URL */
  key: string;
  url: URL;
  request?: Omit<UpstreamRequest, "method" | "body">;
  maxAgeMs: number;
  /** response headers kept with the entry and sent with it (lowercase); "etag" is needed for revalidation */
  keepHeaders: readonly string[];
}

/** The entry for `key` if fresh, else the upstream's current document (stored), else the stale entry. */
export async function revalidatedFetch(ctx: GatewayContext, caller: GatewayCaller, f: RevalidatedFetch): Promise<CachedResult> {
  const entry = await ctx.store.lookup(f.key);
  if (entry && Date.now() - Date.parse(entry.storedAt) < f.maxAgeMs) return { kind: "stored", object: entry, fromCache: true };
  return ctx.store.once(f.key, () => refresh(ctx, caller, f, entry));
}

async function refresh(ctx: GatewayContext, caller: GatewayCaller, f: RevalidatedFetch, stale: StoredObject | undefined): Promise<CachedResult> {
  const etag = stale?.meta.etag;
  let res: UpstreamResponse;
  try {
    res = await ctx.upstream.fetch(caller, f.url, { ...f.request, method: "GET", headers: { ...f.request?.headers, ...(etag ? { "if-none-match": etag } : {}) } });
  } catch (err) {
    if (stale && err instanceof GatewayRefusal && err.reasonCode === "upstream_error") return { kind: "stored", object: stale, fromCache: true };
    throw err;
  }
  if (stale && (res.status === 304 || res.status >= 500)) {
    await res.body.dump();
    // a 304 confirms the stored copy: it is fresh again; a 5xx leaves it as old as it was
    const object = res.status === 304 ? await ctx.store.record(f.key, { digest: stale.digest, sizeBytes: stale.sizeBytes, meta: stale.meta }) : stale;
    return { kind: "stored", object, fromCache: true };
  }
  const headers = pickHeaders(res.headers, f.keepHeaders);
  if (res.status !== 200) return { kind: "upstream_status", status: res.status, headers, body: await readBounded(res.body, STATUS_BODY_BYTES) };
  const { digest, sizeBytes } = await ctx.store.ingest(res.body);
  return { kind: "stored", object: await ctx.store.record(f.key, { digest, sizeBytes, meta: headers }), fromCache: false };
}

/** Sends the result; a guest whose If-None-Match names the stored ETag gets 304 and no body. */
export async function sendRevalidated(
  ctx: GatewayContext,
  req: IncomingMessage,
  res: ServerResponse,
  result: CachedResult,
  head: boolean,
): Promise<{ status: number; bytes: number }> {
  const etag = result.kind === "stored" ? result.object.meta.etag : undefined;
  if (etag && ifNoneMatch(req.headers["if-none-match"]).includes(etag)) {
    res.writeHead(304, { etag }).end();
    return { status: 304, bytes: 0 };
  }
  return sendCached(ctx, res, result, head);
}

function ifNoneMatch(header: string | undefined): string[] {
  if (!header || header.length > 4096) return [];
  return header.split(",").map((tag) => tag.trim()).filter(Boolean);
}
