/**
 * The pure half of the npm route: which package or tarball a guest path names, which digest a version's
 * `dist.integrity` / `dist.shasum` promises, and the packument rewrite that sends tarball downloads of the same
 * upstream through the gateway. Everything here reads guest paths or upstream JSON, so it validates first.
 */
import { z } from "zod";
import type { ExpectedDigest } from "./content-store.ts";
import { GatewayRefusal, invalidRequest, upstreamError } from "./refusal.ts";

/** npm's limit on a package name (validate-npm-package-name) */
const MAX_NAME_LENGTH = 214;
const MAX_TARBALL_FILE_LENGTH = 256;
/** characters encodeURIComponent leaves alone: what npm calls a URL-safe name (old names may have capitals) */
const URL_SAFE = /^[A-Za-z0-9._~'!()*-]+$/;
const TARBALL_FILE = /^[A-Za-z0-9_~'!()*+-][A-Za-z0-9._~'!()*+-]*\.tgz$/;
const DIGEST_BYTES = { sha512: 64, sha256: 32, sha1: 20 } as const;
/** strongest first: the gateway verifies a tarball against the best digest its packument offers */
const PREFERENCE = ["sha512", "sha256", "sha1"] as const;

/** What a path under `/npm/<host>/` asks for. */
export type NpmTarget = { kind: "packument"; name: string } | { kind: "tarball"; name: string; file: string };

/** A tarball the gateway serves: where the upstream keeps it and the SRI string (one digest) it must match. */
export interface TarballEntry {
  url: string;
  integrity: string;
}

export interface RewrittenPackument {
  body: Buffer;
  /** tarball file name → entry, for every version whose tarball now points at the gateway */
  tarballs: Record<string, TarballEntry>;
}

/** Whether `name` is a package name npm could have published: `name` or `@scope/name`, URL-safe, ≤ 214 chars. */
export function isNpmPackageName(name: string): boolean {
  if (name.length === 0 || name.length > MAX_NAME_LENGTH) return false;
  const scoped = /^@([^/]+)\/([^/]+)$/.exec(name);
  const parts = scoped ? [scoped[1]!, scoped[2]!] : [name];
  if (!parts.every((part) => URL_SAFE.test(part) && !part.startsWith("."))) return false;
  // "-" is the registry's own namespace (/-/ping, /-/v1/search, /-/npm/v1/security/…), never a package
  return scoped !== null || !(name.startsWith("_") || name === "-");
}

/**
 * Reads the segments after the host: `<name>` or `@scope/name` (one segment when the guest sent `%2f`, else two)
 * is a packument; `<name>/-/<file>.tgz` a tarball. Anything else is refused.
 */
export function parseNpmTarget(segments: readonly string[], host: string): NpmTarget {
  const first = segments[0];
  if (first === undefined) throw invalidRequest("missing package name after the registry host", host);
  const nameSegments = first.startsWith("@") && !first.includes("/") ? 2 : 1;
  const name = segments.slice(0, nameSegments).join("/");
  if (!isNpmPackageName(name)) throw invalidRequest(`"${name.slice(0, 64)}" is not an npm package name`, host);
  const tail = segments.slice(nameSegments);
  if (tail.length === 0) return { kind: "packument", name };
  const file = tail[1];
  if (tail.length === 2 && tail[0] === "-" && file !== undefined && isTarballFile(file)) return { kind: "tarball", name, file };
  throw new GatewayRefusal("invalid_request", 404, "the npm route serves packuments (/<name>) and tarballs (/<name>/-/<file>.tgz) only", host);
}

/** The packument's path on the registry: a scoped name keeps its slash encoded, as npm sends it. */
export function upstreamPackumentPath(name: string): string {
  return `/${name.replace("/", "%2f")}`;
}

/**
 * The strongest digest the gateway can verify among an SRI `integrity` (space-separated `alg-base64[?opts]`)
 * and a hex `shasum`; undefined when neither holds one.
 */
export function strongestIntegrity(integrity: unknown, shasum: unknown): { sri: string; expected: ExpectedDigest } | undefined {
  const offered = new Map<string, Buffer>();
  if (typeof integrity === "string") {
    for (const token of integrity.trim().split(/\s+/)) {
      const match = /^(sha512|sha256|sha1)-([A-Za-z0-9+/]+={0,2})(\?.*)?$/.exec(token);
      if (!match) continue;
      const algorithm = match[1] as keyof typeof DIGEST_BYTES;
      const value = Buffer.from(match[2]!, "base64");
      if (value.length === DIGEST_BYTES[algorithm] && !offered.has(algorithm)) offered.set(algorithm, value);
    }
  }
  if (!offered.has("sha1") && typeof shasum === "string" && /^[a-f0-9]{40}$/i.test(shasum)) offered.set("sha1", Buffer.from(shasum, "hex"));
  for (const algorithm of PREFERENCE) {
    const value = offered.get(algorithm);
    if (value) return { sri: `${algorithm}-${value.toString("base64")}`, expected: { algorithm, value } };
  }
  return undefined;
}

const PackumentShape = z.looseObject({ versions: z.record(z.string(), z.unknown()).optional() });
const VersionShape = z.looseObject({
  dist: z.looseObject({ tarball: z.string().max(4096), integrity: z.unknown().optional(), shasum: z.unknown().optional() }),
});

/**
 * Parses an upstream packument and points every `versions[*].dist.tarball` that the same upstream serves as
 * `https://<authority>/<name>/-/<file>.tgz`, and whose digest the gateway can check, at
 * `<gatewayUrl>/npm/<authority>/<name>/-/<file>`. Other tarball URLs are left as they are.
 */
export function rewritePackument(raw: Buffer, opts: { name: string; authority: string; gatewayUrl: string }): RewrittenPackument {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString("utf8"));
  } catch {
    throw upstreamError(`the packument of ${opts.name} is not JSON`, opts.authority);
  }
  const packument = PackumentShape.safeParse(parsed);
  if (!packument.success) throw upstreamError(`the packument of ${opts.name} is not an object with a versions map`, opts.authority);
  const tarballs: Record<string, TarballEntry> = {};
  for (const version of Object.values(packument.data.versions ?? {})) {
    const shaped = VersionShape.safeParse(version);
    if (!shaped.success) continue;
    const { tarball, integrity, shasum } = shaped.data.dist;
    const file = sameUpstreamTarballFile(tarball, opts.name, opts.authority);
    const digest = strongestIntegrity(integrity, shasum);
    if (!file || !digest || (tarballs[file] && tarballs[file].integrity !== digest.sri)) continue;
    tarballs[file] = { url: tarball, integrity: digest.sri };
    // the parse above kept this object's identity in the record, so the rewrite lands in `packument.data`
    (version as { dist: { tarball: string } }).dist.tarball = `${opts.gatewayUrl}/npm/${opts.authority}/${opts.name}/-/${encodeURIComponent(file)}`;
  }
  return { body: Buffer.from(JSON.stringify(packument.data)), tarballs };
}

/** The file name when `tarball` is `https://<authority>/<name>/-/<file>.tgz` (scope slash plain or `%2f`). */
function sameUpstreamTarballFile(tarball: string, name: string, authority: string): string | undefined {
  let url: URL;
  try {
    url = new URL(tarball);
  } catch {
    return undefined;
  }
  if (url.protocol !== "https:" || url.host !== authority || url.username || url.password || url.search || url.hash) return undefined;
  const prefixes = [`/${name}/-/`, `${upstreamPackumentPath(name)}/-/`, `${upstreamPackumentPath(name).replace("%2f", "%2F")}/-/`];
  const prefix = prefixes.find((p) => url.pathname.startsWith(p));
  if (!prefix) return undefined;
  let file: string;
  try {
    file = decodeURIComponent(url.pathname.slice(prefix.length));
  } catch {
    return undefined;
  }
  return isTarballFile(file) ? file : undefined;
}

function isTarballFile(file: string): boolean {
  return file.length <= MAX_TARBALL_FILE_LENGTH && TARBALL_FILE.test(file);
}
