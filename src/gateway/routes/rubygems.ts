/**
 * /rubygems/: what Bundler asks rubygems.org for when the gateway is its mirror
 * (BUNDLE_MIRROR__HTTPS://RUBYGEMS__ORG/=<gw>/rubygems/). The compact index (/versions, /info/<gem>, /names) and
 * the legacy spec indexes change, so they are cached briefly and revalidated by ETag; .gem files and quick
 * gemspecs never change and are cached for good, a .gem verified against the SHA-256 its /info line lists.
 */
import { readFile } from "node:fs/promises";
import { IntegrityMismatch, type ExpectedDigest } from "../content-store.ts";
import { requireAllowed } from "../caller-policy.ts";
import { invalidRequest, methodNotAllowed, upstreamError } from "../refusal.ts";
import { parseUpstreamHost, type UpstreamHost } from "../request-path.ts";
import type { GatewayContext, Route } from "../route.ts";
import type { GatewayCaller } from "../types.ts";
import { cachedFetch, sendCached, type CachedResult } from "./cached-fetch.ts";
import { downloadRequest } from "./download-request.ts";
import { revalidatedFetch, sendRevalidated, type RevalidatedFetch } from "./revalidated-fetch.ts";

export const DEFAULT_RUBYGEMS_HOST = "rubygems.org";
/** how long index documents are served without asking the upstream again */
const INDEX_MAX_AGE_MS = 60_000;
/** the largest /info/<gem> read for checksums (rails' is a few hundred KiB) */
const MAX_INFO_BYTES = 16 * 1024 * 1024;
const MAX_GEM_NAME_CHARS = 200;
const MAX_FULL_NAME_CHARS = 300;
/** how many name/version splits of an ambiguous file name ("a-1-b-2.0.gem") are looked up for a checksum */
const MAX_NAME_SPLITS = 3;
const GEM_NAME = /^[A-Za-z0-9._-]+$/;
const INDEX_FILES = new Set(["versions", "names", "specs.4.8.gz", "latest_specs.4.8.gz", "prerelease_specs.4.8.gz"]);
const INDEX_HEADERS = ["content-type", "etag", "repr-digest", "digest"] as const;
const PATH_HELP = "expected versions, names, info/<gem>, gems/<gem>-<version>.gem, quick/Marshal.4.8/<gem>-<version>.gemspec.rz or a specs index";

type GemTarget = { kind: "index" | "gemspec"; upstreamPath: string } | { kind: "gem"; upstreamPath: string; fullName: string };

export const rubygemsRoute: Route = {
  prefix: "rubygems",
  service: "rubygems",
  async handle({ caller, method, path, req, res }, ctx) {
    const upstream = parseUpstreamHost(ctx.settings.rubygemsHost ?? DEFAULT_RUBYGEMS_HOST);
    if (method !== "GET" && method !== "HEAD") throw methodNotAllowed(method, upstream.authority);
    if (path.trailingSlash) throw invalidRequest(`not a RubyGems path: ${PATH_HELP}`, upstream.authority);
    const target = parseGemPath(path.segments, upstream.authority);
    // before the cache too: a stage that no longer allows the host gets nothing from it, cached or not
    requireAllowed(caller, upstream.host, upstream.port);
    const url = new URL(`https://${upstream.authority}/${target.upstreamPath}`);
    const head = method === "HEAD";
    let result: CachedResult;
    let sent: { status: number; bytes: number };
    if (target.kind === "index") {
      result = await revalidatedFetch(ctx, caller, await indexFetch(ctx, url));
      sent = await sendRevalidated(ctx, req, res, result, head);
    } else {
      const expected = target.kind === "gem" ? await listedChecksum(ctx, caller, upstream, target.fullName) : undefined;
      result = await fetchImmutable(ctx, caller, url, expected);
      sent = await sendCached(ctx, res, result, head);
    }
    return { destinationHost: upstream.authority, reasonCode: result.kind === "stored" && result.fromCache ? "cached" : "proxied", ...sent };
  },
};

/** Maps a guest path to the upstream path it stands for; anything else is invalid_request. */
export function parseGemPath(segments: readonly string[], host: string): GemTarget {
  const [first, second, third, ...extra] = segments;
  if (first !== undefined && second === undefined && INDEX_FILES.has(first)) return { kind: "index", upstreamPath: first };
  if (extra.length === 0 && first === "info" && second !== undefined && third === undefined) {
    if (!isGemName(second)) throw invalidRequest(`"${second.slice(0, 200)}" is not a gem name`, host);
    return { kind: "index", upstreamPath: `info/${second}` };
  }
  if (extra.length === 0 && first === "gems" && second?.endsWith(".gem") && third === undefined) {
    const fullName = second.slice(0, -".gem".length);
    if (nameSplits(fullName).length === 0) throw invalidRequest(`"${second.slice(0, 200)}" is not <gem>-<version>.gem`, host);
    return { kind: "gem", upstreamPath: `gems/${second}`, fullName };
  }
  if (extra.length === 0 && first === "quick" && second === "Marshal.4.8" && third?.endsWith(".gemspec.rz")) {
    if (nameSplits(third.slice(0, -".gemspec.rz".length)).length === 0) throw invalidRequest(`"${third.slice(0, 200)}" is not <gem>-<version>.gemspec.rz`, host);
    return { kind: "gemspec", upstreamPath: `quick/Marshal.4.8/${third}` };
  }
  throw invalidRequest(`not a RubyGems path: ${PATH_HELP}`, host);
}

/** RubyGems' name rule: letters, digits, ".", "_" and "-", with at least one letter. */
export function isGemName(name: string): boolean {
  return name.length <= MAX_GEM_NAME_CHARS && GEM_NAME.test(name) && /[A-Za-z]/.test(name);
}

/**
 * The ways `<name>-<version>[-<platform>]` splits into a gem name and what its /info line starts with: at each
 * "-" followed by a digit, leftmost first (gem names rarely hold "-<digit>", versions always start with one).
 */
export function nameSplits(fullName: string): { name: string; version: string }[] {
  if (fullName.length > MAX_FULL_NAME_CHARS || !GEM_NAME.test(fullName)) return [];
  const splits: { name: string; version: string }[] = [];
  for (let at = fullName.indexOf("-"); at !== -1; at = fullName.indexOf("-", at + 1)) {
    const name = fullName.slice(0, at);
    const version = fullName.slice(at + 1);
    if (/^\d/.test(version) && isGemName(name)) splits.push({ name, version });
  }
  return splits;
}

async function indexFetch(ctx: GatewayContext, url: URL): Promise<RevalidatedFetch> {
  return { key: `rubygems-index ${url.href}`, url, request: await downloadRequest(ctx, url), maxAgeMs: INDEX_MAX_AGE_MS, keepHeaders: INDEX_HEADERS };
}

async function fetchImmutable(ctx: GatewayContext, caller: GatewayCaller, url: URL, expected: ExpectedDigest | undefined): Promise<CachedResult> {
  try {
    return await cachedFetch(ctx, caller, {
      key: `rubygems ${url.href}`,
      url,
      request: await downloadRequest(ctx, url),
      ...(expected ? { expected } : {}),
      keepHeaders: ["content-type", "last-modified"],
    });
  } catch (err) {
    if (err instanceof IntegrityMismatch) throw upstreamError(`refused: ${url.pathname.slice(1)} does not match the checksum its /info lists (${err.message})`, url.host);
    throw err;
  }
}

/** The SHA-256 the compact index lists for this .gem, when the upstream's /info has one. */
async function listedChecksum(ctx: GatewayContext, caller: GatewayCaller, upstream: UpstreamHost, fullName: string): Promise<ExpectedDigest | undefined> {
  for (const split of nameSplits(fullName).slice(0, MAX_NAME_SPLITS)) {
    const info = await revalidatedFetch(ctx, caller, await indexFetch(ctx, new URL(`https://${upstream.authority}/info/${split.name}`)));
    if (info.kind !== "stored" || info.object.sizeBytes > MAX_INFO_BYTES) continue;
    const hex = checksumFromInfo(await readFile(ctx.store.blobPath(info.object.digest), "utf8"), split.version);
    if (hex) return { algorithm: "sha256", value: Buffer.from(hex, "hex") };
  }
  return undefined;
}

/**
 * Finds `checksum:<hex>` on the /info line for `version` (`<version>[-<platform>]`). A line reads
 * `<version> <dependency>,…|checksum:<hex>,ruby:<req>,…`.
 */
export function checksumFromInfo(info: string, version: string): string | undefined {
  for (const line of info.split("\n")) {
    const space = line.indexOf(" ");
    if (space === -1 || line.slice(0, space) !== version) continue;
    const bar = line.indexOf("|", space);
    if (bar === -1) return undefined;
    for (const requirement of line.slice(bar + 1).split(",")) {
      const hex = /^checksum:([a-f0-9]{64})$/.exec(requirement.trim())?.[1];
      if (hex) return hex;
    }
    return undefined;
  }
  return undefined;
}
