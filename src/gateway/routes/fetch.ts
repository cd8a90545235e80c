/**
 * /fetch/<host>[:port]/<path>: immutable HTTPS downloads (toolchains, release assets), cached by URL. A guest
 * that knows the digest sends `X-Cleanroom-Expected-Sha256: <hex>`; the bytes are then verified before they are
 * stored or served, and a cached copy that differs is refused.
 */
import { requireAllowed } from "../caller-policy.ts";
import { invalidRequest, methodNotAllowed } from "../refusal.ts";
import { encodeSegments, parseUpstreamHost } from "../request-path.ts";
import type { ExpectedDigest } from "../content-store.ts";
import type { Route } from "../route.ts";
import { cachedFetch, sendCached } from "./cached-fetch.ts";
import { downloadRequest } from "./download-request.ts";

export const EXPECTED_SHA256_HEADER = "x-cleanroom-expected-sha256";

export const fetchRoute: Route = {
  prefix: "fetch",
  service: "fetch",
  async handle({ caller, method, path, req, res }, ctx) {
    const upstream = parseUpstreamHost(path.segments[0]);
    if (method !== "GET" && method !== "HEAD") throw methodNotAllowed(method, upstream.authority);
    // before the cache: a stage that may no longer reach the host gets nothing of it, cached or not
    requireAllowed(caller, upstream.host, upstream.port);
    const rest = path.segments.slice(1);
    if (rest.length === 0) throw invalidRequest("missing path after the host", upstream.authority);
    const url = new URL(`https://${upstream.authority}/${encodeSegments(rest)}${path.trailingSlash ? "/" : ""}${path.query ? `?${path.query}` : ""}`);
    const expected = expectedSha256(req.headers[EXPECTED_SHA256_HEADER], upstream.authority);
    const result = await cachedFetch(ctx, caller, {
      key: `fetch ${url.href}`,
      url,
      request: await downloadRequest(ctx, url),
      ...(expected ? { expected } : {}),
      keepHeaders: ["content-type", "last-modified", "etag"],
    });
    const sent = await sendCached(ctx, res, result, method === "HEAD");
    const fromCache = result.kind === "stored" && result.fromCache;
    return { destinationHost: upstream.authority, reasonCode: fromCache ? "cached" : "proxied", ...sent };
  },
};

function expectedSha256(header: string | string[] | undefined, host: string): ExpectedDigest | undefined {
  if (header === undefined) return undefined;
  const text = Array.isArray(header) ? header[0] : header;
  const hex = text?.trim().toLowerCase().replace(/^sha256:/, "");
  if (!hex || !/^[a-f0-9]{64}$/.test(hex)) throw invalidRequest(`${EXPECTED_SHA256_HEADER} must be 64 hex digits`, host);
  return { algorithm: "sha256", value: Buffer.from(hex, "hex") };
}
