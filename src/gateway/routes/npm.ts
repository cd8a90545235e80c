/**
 * /npm/<host>[:port]/…: an npm registry for guests (`npm_config_registry=<gateway>/npm/registry.npmjs.org/`).
 * Packuments are fetched in the variant the guest asked for (abbreviated or full), their same-upstream tarball
 * URLs rewritten to the gateway, and cached for five minutes, then revalidated with the upstream's ETag (a stale
 * copy is served while the upstream is unreachable). Tarballs are served only for versions a packument lists,
 * verified against that version's integrity before they are stored or served, and cached by that integrity.
 */
import type { ServerResponse } from "node:http";
import { readFile } from "node:fs/promises";
import { Readable } from "node:stream";
import { z } from "zod";
import { requireAllowed } from "../caller-policy.ts";
import { IntegrityMismatch, ObjectTooLarge, type StoredObject } from "../content-store.ts";
import { rewritePackument, parseNpmTarget, strongestIntegrity, upstreamPackumentPath, type TarballEntry } from "../npm-packument.ts";
import { GatewayRefusal, methodNotAllowed, upstreamError } from "../refusal.ts";
import { parseUpstreamHost, type UpstreamHost } from "../request-path.ts";
import type { GatewayContext, Route, RouteOutcome } from "../route.ts";
import type { GatewayCaller } from "../types.ts";
import { readUpstreamBody, type UpstreamResponse } from "../upstream-client.ts";
import { cachedFetch, readBounded, sendCached, STATUS_BODY_BYTES, type CachedResult } from "./cached-fetch.ts";

const PACKUMENT_MAX_BYTES = 64 * 1024 * 1024;
/** how long a cached packument is served without asking the upstream (registry.npmjs.org says max-age=300 too) */
const PACKUMENT_FRESH_MS = 5 * 60_000;
const ABBREVIATED_TYPE = "application/vnd.npm.install-v1+json";
const ACCEPT = {
  abbreviated: `${ABBREVIATED_TYPE}; q=1.0, application/json; q=0.8, */*`,
  full: "application/json",
} as const;

type Variant = keyof typeof ACCEPT;

/** Who asks for which registry, and the gateway URL rewritten tarballs name. */
interface RegistryCall {
  caller: GatewayCaller;
  upstream: UpstreamHost;
  gatewayUrl: string;
}

type PackumentResult =
  | { kind: "stored"; object: StoredObject; fromCache: boolean }
  | Extract<CachedResult, { kind: "upstream_status" }>;

export const npmRoute: Route = {
  prefix: "npm",
  service: "npm",
  async handle({ caller, method, path, req, res, gatewayUrl }, ctx) {
    const upstream = parseUpstreamHost(path.segments[0]);
    // npm audit, publish, login and dist-tag edits are writes (or POSTs) the gateway never relays
    if (method !== "GET" && method !== "HEAD") throw methodNotAllowed(method, upstream.authority);
    const target = parseNpmTarget(path.segments.slice(1), upstream.authority);
    requireAllowed(caller, upstream.host, upstream.port);
    const call: RegistryCall = { caller, upstream, gatewayUrl };
    const head = method === "HEAD";
    if (target.kind === "packument") {
      const variant: Variant = String(req.headers.accept ?? "").includes(ABBREVIATED_TYPE) ? "abbreviated" : "full";
      return servePackument(ctx, call, target.name, variant, res, head);
    }
    return serveTarball(ctx, call, target.name, target.file, res, head);
  },
};

async function servePackument(ctx: GatewayContext, call: RegistryCall, name: string, variant: Variant, res: ServerResponse, head: boolean): Promise<RouteOutcome> {
  const result = await loadPackument(ctx, call, name, variant, false);
  const destinationHost = call.upstream.authority;
  if (result.kind === "upstream_status") return { destinationHost, reasonCode: "proxied", ...(await sendCached(ctx, res, result, head)) };
  const headers = { "content-type": result.object.meta["content-type"] ?? "application/json", "x-cleanroom-digest": result.object.digest };
  const bytes = await ctx.store.send(res, result.object, headers, head);
  return { destinationHost, reasonCode: result.fromCache ? "cached" : "proxied", status: 200, bytes };
}

async function serveTarball(ctx: GatewayContext, call: RegistryCall, name: string, file: string, res: ServerResponse, head: boolean): Promise<RouteOutcome> {
  const authority = call.upstream.authority;
  const entry = await tarballEntry(ctx, call, name, file);
  const digest = strongestIntegrity(entry.integrity, undefined);
  if (!digest) throw upstreamError(`no usable integrity recorded for ${name}/-/${file}`, authority);
  const url = new URL(entry.url);
  const authorization = await ctx.credentials.authorizationFor(url, "http");
  let result: CachedResult;
  try {
    result = await cachedFetch(ctx, call.caller, {
      // by integrity: the same bytes are the same tarball whichever registry or name they came from
      key: `npm tarball ${digest.sri}`,
      url,
      request: { headers: { "user-agent": "cleanroom-gateway", accept: "*/*" }, ...(authorization ? { authorization } : {}) },
      expected: digest.expected,
      keepHeaders: [],
    });
  } catch (err) {
    if (err instanceof IntegrityMismatch || err instanceof ObjectTooLarge) throw upstreamError(`refused ${name}/-/${file}: ${err.message}`, authority);
    throw err;
  }
  const sent = await sendCached(ctx, res, result, head, { "content-type": "application/octet-stream" });
  const fromCache = result.kind === "stored" && result.fromCache;
  return { destinationHost: authority, reasonCode: fromCache ? "cached" : "proxied", ...sent };
}

/** The upstream URL and integrity of one tarball, from the cached packument or a refreshed one. */
async function tarballEntry(ctx: GatewayContext, call: RegistryCall, name: string, file: string): Promise<TarballEntry> {
  const authority = call.upstream.authority;
  const known = await readTarballIndex(ctx, tarballIndexKey(authority, name));
  const listed = known?.[file];
  if (listed) return listed; // a published version's tarball never changes: no need to revalidate
  const packument = await loadPackument(ctx, call, name, "abbreviated", known === undefined);
  if (packument.kind === "upstream_status") {
    if (packument.status === 404) throw new GatewayRefusal("invalid_request", 404, `the registry has no package ${name}`, authority);
    throw upstreamError(`the registry answered ${packument.status} for the packument of ${name}`, authority);
  }
  const refreshed = (await readTarballIndex(ctx, tarballIndexKey(authority, name)))?.[file];
  if (!refreshed) throw new GatewayRefusal("invalid_request", 404, `${file} is not a tarball of any version of ${name} in its packument`, authority);
  return refreshed;
}

/**
 * The packument from the cache while fresh, else from the upstream: conditional on the cached copy's ETag
 * (unless `refetch`: the tarball index that goes with it is missing), falling back to the stale copy when the
 * upstream cannot be reached.
 */
async function loadPackument(ctx: GatewayContext, call: RegistryCall, name: string, variant: Variant, refetch: boolean): Promise<PackumentResult> {
  const key = `npm packument ${call.upstream.authority} ${name} ${variant} ${call.gatewayUrl}`;
  const cached = await ctx.store.lookup(key);
  if (cached && !refetch && Date.now() - Date.parse(cached.storedAt) < PACKUMENT_FRESH_MS) return { kind: "stored", object: cached, fromCache: true };
  return ctx.store.once(key, () => refreshPackument(ctx, call, { name, variant, key, stale: cached, conditional: !refetch }));
}

async function refreshPackument(
  ctx: GatewayContext,
  call: RegistryCall,
  { name, variant, key, stale, conditional }: { name: string; variant: Variant; key: string; stale: StoredObject | undefined; conditional: boolean },
): Promise<PackumentResult> {
  const authority = call.upstream.authority;
  const url = new URL(`https://${authority}${upstreamPackumentPath(name)}`);
  const authorization = await ctx.credentials.authorizationFor(url, "http");
  const etag = conditional ? stale?.meta["upstream-etag"] : undefined;
  const headers: Record<string, string> = { "user-agent": "cleanroom-gateway", accept: ACCEPT[variant], ...(etag ? { "if-none-match": etag } : {}) };
  let res: UpstreamResponse;
  try {
    res = await ctx.upstream.fetch(call.caller, url, { headers, ...(authorization ? { authorization } : {}) });
  } catch (err) {
    if (stale && err instanceof GatewayRefusal && err.reasonCode === "upstream_error") return { kind: "stored", object: stale, fromCache: true };
    throw err;
  }
  if (stale && res.status === 304 && etag) {
    await res.body.dump();
    // still current: fresh for another period
    return { kind: "stored", object: await ctx.store.record(key, { digest: stale.digest, sizeBytes: stale.sizeBytes, meta: stale.meta }), fromCache: true };
  }
  if (stale && res.status >= 500) {
    await res.body.dump();
    // keeps the stale copy's age, so the next request asks again
    return { kind: "stored", object: stale, fromCache: true };
  }
  if (res.status !== 200) {
    const body = await readBounded(res.body, STATUS_BODY_BYTES);
    const type = res.headers["content-type"];
    return { kind: "upstream_status", status: res.status === 304 ? 502 : res.status, headers: typeof type === "string" ? { "content-type": type } : {}, body };
  }
  const raw = await readUpstreamBody(res, PACKUMENT_MAX_BYTES, authority, "the packument");
  const rewritten = rewritePackument(raw, { name, authority, gatewayUrl: call.gatewayUrl });
  await writeTarballIndex(ctx, tarballIndexKey(authority, name), rewritten.tarballs);
  const stored = await ctx.store.ingest(Readable.from([rewritten.body]));
  const type = res.headers["content-type"];
  const meta: Record<string, string> = {
    "content-type": variant === "abbreviated" && typeof type === "string" && type.startsWith(ABBREVIATED_TYPE) ? ABBREVIATED_TYPE : "application/json",
    ...(typeof res.headers.etag === "string" && res.headers.etag.length <= 256 ? { "upstream-etag": res.headers.etag } : {}),
  };
  return { kind: "stored", object: await ctx.store.record(key, { ...stored, meta }), fromCache: false };
}

function tarballIndexKey(authority: string, name: string): string {
  return `npm tarballs ${authority} ${name}`;
}

const TarballIndex = z.record(z.string(), z.object({ url: z.url({ protocol: /^https$/ }), integrity: z.string() }));

async function writeTarballIndex(ctx: GatewayContext, key: string, tarballs: Record<string, TarballEntry>): Promise<void> {
  const stored = await ctx.store.ingest(Readable.from([Buffer.from(JSON.stringify(tarballs))]));
  await ctx.store.record(key, { ...stored, meta: {} });
}

async function readTarballIndex(ctx: GatewayContext, key: string): Promise<Record<string, TarballEntry> | undefined> {
  const entry = await ctx.store.lookup(key);
  if (!entry || entry.sizeBytes > PACKUMENT_MAX_BYTES) return undefined;
  try {
    const parsed = TarballIndex.safeParse(JSON.parse(await readFile(ctx.store.blobPath(entry.digest), "utf8")));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined; // removed by a prune between lookup and read: refetched like a miss
  }
}
