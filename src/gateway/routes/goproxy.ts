/**
 * /goproxy/: the Go module proxy protocol in front of proxy.golang.org (guests set GOPROXY=<gw>/goproxy/), and
 * the checksum database under /goproxy/sumdb/<name>/ (Go asks `supported` first, then `lookup/…` and `tile/…`).
 * A version's .info, .mod and .zip never change, so they are cached for good, each checked to be the version
 * asked for; @v/list and @latest change, so they are cached briefly and revalidated.
 */
import { readFile } from "node:fs/promises";
import yauzl from "yauzl";
import { z } from "zod";
import { callerAllows, requireAllowed } from "../caller-policy.ts";
import { GatewayRefusal, invalidRequest, methodNotAllowed, upstreamError } from "../refusal.ts";
import { parseUpstreamHost, type UpstreamHost } from "../request-path.ts";
import type { GatewayContext, Route, RouteOutcome, RouteRequest } from "../route.ts";
import { parseJsonOrUndefined, readUpstreamBody } from "../upstream-client.ts";
import { cachedFetch, sendCached, type CachedResult } from "./cached-fetch.ts";
import { downloadRequest } from "./download-request.ts";
import { revalidatedFetch, sendRevalidated } from "./revalidated-fetch.ts";

export const DEFAULT_GO_PROXY = "proxy.golang.org";
/** how long @v/list, @latest and branch queries are served without asking the upstream again */
const MUTABLE_MAX_AGE_MS = 60_000;
const MAX_MODULE_PATH_CHARS = 500;
const MAX_VERSION_CHARS = 128;
const MAX_INFO_BYTES = 64 * 1024;
/** sumdb lookups, signed tree heads and partial tiles are small; anything bigger is not what Go asked for */
const MAX_SUMDB_PASSTHROUGH_BYTES = 1024 * 1024;
const MAX_ZIP_ENTRIES = 100_000;

const SEMVER = /^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-(0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(\.(0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*)?(\+incompatible)?$/;
/** a branch, tag or commit a guest asks the proxy to resolve (`go get m@main`) */
const VERSION_QUERY = /^[A-Za-z0-9][A-Za-z0-9._+-]*$/;
const PATH_ELEMENT = /^[A-Za-z0-9._~-]+$/;
const FIRST_PATH_ELEMENT = /^[a-z0-9.-]+$/;
const WINDOWS_RESERVED = /^(con|prn|aux|nul|com[1-9]|lpt[1-9])$/i;
/** tile/<height>/<level or "data">/<x000/…>nnn[.p/<width>] */
const SUMDB_TILE = /^tile\/\d{1,2}\/(data|\d{1,2})\/(x\d{3}\/)*\d{3}(\.p\/\d{1,3})?$/;
const GOPROXY_PATH_HELP = "expected <module>/@v/list, <module>/@v/<version>.info|.mod|.zip or <module>/@latest";

type ModuleFile = "list" | "latest" | "info" | "mod" | "zip";

/** A validated GOPROXY request: the decoded module path and version, and the case-encoded upstream path. */
interface ModuleRequest {
  file: ModuleFile;
  module: string;
  version?: string;
  upstreamPath: string;
  immutable: boolean;
}

export const goproxyRoute: Route = {
  prefix: "goproxy",
  service: "goproxy",
  async handle(request, ctx) {
    if (request.path.segments[0] === "sumdb") return handleSumdb(request, ctx);
    const upstream = parseUpstreamHost(ctx.settings.goProxy ?? DEFAULT_GO_PROXY);
    const { caller, method, path, req, res } = request;
    if (method !== "GET" && method !== "HEAD") throw methodNotAllowed(method, upstream.authority);
    if (path.trailingSlash) throw invalidRequest(`not a GOPROXY path: ${GOPROXY_PATH_HELP}`, upstream.authority);
    const target = parseModuleRequest(path.segments, upstream.authority);
    // before the cache too: a stage that no longer allows the proxy gets nothing from it, cached or not
    requireAllowed(caller, upstream.host, upstream.port);
    const url = new URL(`https://${upstream.authority}/${target.upstreamPath}`);
    const upstreamRequest = await downloadRequest(ctx, url);
    const head = method === "HEAD";
    let result: CachedResult;
    let sent: { status: number; bytes: number };
    if (target.immutable) {
      result = await cachedFetch(ctx, caller, {
        key: `goproxy ${url.href}`,
        url,
        request: upstreamRequest,
        keepHeaders: ["content-type"],
        verify: (blobPath) => verifyModuleFile(blobPath, target, upstream.authority),
      });
      sent = await sendCached(ctx, res, result, head);
    } else {
      result = await revalidatedFetch(ctx, caller, { key: `goproxy-mutable ${url.href}`, url, request: upstreamRequest, maxAgeMs: MUTABLE_MAX_AGE_MS, keepHeaders: ["content-type", "etag"] });
      sent = await sendRevalidated(ctx, req, res, result, head);
    }
    return { destinationHost: upstream.authority, reasonCode: result.kind === "stored" && result.fromCache ? "cached" : "proxied", ...sent };
  },
};

/** Parses `<module>/@v/…` or `<module>/@latest`; refuses malformed module paths and versions (invalid_request). */
export function parseModuleRequest(segments: readonly string[], host: string): ModuleRequest {
  const last = segments[segments.length - 1] ?? "";
  let file: ModuleFile;
  let moduleSegments: readonly string[];
  let escapedVersion: string | undefined;
  if (last === "@latest") {
    file = "latest";
    moduleSegments = segments.slice(0, -1);
  } else if (segments[segments.length - 2] === "@v") {
    moduleSegments = segments.slice(0, -2);
    const named = /^(.+)\.(info|mod|zip)$/.exec(last);
    if (last === "list") file = "list";
    else if (named) {
      escapedVersion = named[1]!;
      file = named[2] as ModuleFile;
    } else throw invalidRequest(`not a GOPROXY path: ${GOPROXY_PATH_HELP}`, host);
  } else throw invalidRequest(`not a GOPROXY path: ${GOPROXY_PATH_HELP}`, host);

  const escapedModule = moduleSegments.join("/");
  const module = parseModulePath(escapedModule, host);
  if (escapedVersion === undefined) return { file, module, upstreamPath: `${escapedModule}/${file === "list" ? "@v/list" : "@latest"}`, immutable: false };
  const version = unescapeCase(escapedVersion);
  const canonical = version !== undefined && version.length <= MAX_VERSION_CHARS && SEMVER.test(version);
  // .mod and .zip exist only for canonical versions; .info may also resolve a branch or commit, which moves
  if (!canonical && (file !== "info" || version === undefined || version.length > MAX_VERSION_CHARS || !VERSION_QUERY.test(version))) {
    throw invalidRequest(`"${escapedVersion.slice(0, 140)}" is not a valid (case-encoded) Go module version`, host);
  }
  return { file, module, version, upstreamPath: `${escapedModule}/@v/${escapedVersion}.${file}`, immutable: canonical };
}

/** Decodes and checks a case-encoded module path the way Go's module.CheckPath does. */
function parseModulePath(escaped: string, host: string): string {
  const module = unescapeCase(escaped);
  if (module === undefined || !isModulePath(module)) throw invalidRequest(`"${escaped.slice(0, 200)}" is not a valid (case-encoded) Go module path`, host);
  return module;
}

/** Go's case encoding: "!x" stands for "X" and an unescaped upper-case letter is invalid. */
export function unescapeCase(escaped: string): string | undefined {
  if (/[A-Z]|![^a-z]|!$/.test(escaped)) return undefined;
  return escaped.replace(/!([a-z])/g, (_, letter: string) => letter.toUpperCase());
}

export function isModulePath(path: string): boolean {
  if (path.length === 0 || path.length > MAX_MODULE_PATH_CHARS) return false;
  const elements = path.split("/");
  const first = elements[0]!;
  if (!FIRST_PATH_ELEMENT.test(first) || !first.includes(".") || first.startsWith("-")) return false;
  return elements.every((element) => {
    if (!PATH_ELEMENT.test(element) || element.startsWith(".") || element.endsWith(".")) return false;
    const short = element.split(".")[0]!;
    // Windows cannot hold these names, so Go refuses them in module paths
    return !WINDOWS_RESERVED.test(short) && !/~\d+$/.test(short);
  });
}

/** An immutable file must be the version asked for before it is cached for every later sandbox. */
async function verifyModuleFile(blobPath: string, target: ModuleRequest, host: string): Promise<void> {
  const what = `${target.module}@${target.version}`;
  if (target.file === "info") {
    const text = await readFile(blobPath, "utf8");
    const info = text.length <= MAX_INFO_BYTES ? z.object({ Version: z.string() }).safeParse(parseJsonOrUndefined(text)) : undefined;
    if (!info?.success || info.data.Version !== target.version) throw upstreamError(`refused: the upstream's .info for ${what} describes another version`, host);
  } else if (target.file === "zip") {
    await verifyZipNames(blobPath, `${what}/`, host);
  }
}

/** Every file of a module zip lies under `<module>@<version>/`; a zip of another module or version is refused. */
async function verifyZipNames(blobPath: string, prefix: string, host: string): Promise<void> {
  let zip: yauzl.ZipFile;
  try {
    zip = await yauzl.openPromise(blobPath, { autoClose: false, strictFileNames: true });
  } catch (err) {
    throw upstreamError(`refused: the upstream's zip for ${prefix.slice(0, -1)} is not a valid zip (${(err as Error).message})`, host);
  }
  try {
    if (zip.entryCount > MAX_ZIP_ENTRIES) throw upstreamError(`refused: the zip for ${prefix.slice(0, -1)} has more than ${MAX_ZIP_ENTRIES} files`, host);
    for await (const entry of zip.eachEntry()) {
      if (!entry.fileName.startsWith(prefix)) {
        throw upstreamError(`refused: the upstream's zip for ${prefix.slice(0, -1)} holds "${entry.fileName.slice(0, 200)}", outside ${prefix}`, host);
      }
    }
  } catch (err) {
    if (err instanceof GatewayRefusal) throw err;
    throw upstreamError(`refused: the upstream's zip for ${prefix.slice(0, -1)} is malformed (${(err as Error).message})`, host);
  } finally {
    zip.close();
  }
}

/** /goproxy/sumdb/<name>/supported|lookup/…|tile/…|latest, audited as service "sumdb". */
async function handleSumdb({ caller, method, path, res }: RouteRequest, ctx: GatewayContext): Promise<RouteOutcome> {
  const db = parseUpstreamHost(path.segments[1]);
  if (method !== "GET" && method !== "HEAD") throw methodNotAllowed(method, db.authority);
  const rest = path.segments.slice(2).join("/");
  const head = method === "HEAD";
  if (rest === "supported") {
    // 404 tells Go to contact the checksum database directly, which the sandbox's network policy then decides
    if (!callerAllows(caller, db.host, db.port)) throw new GatewayRefusal("host_not_allowed", 404, `${db.host}:${db.port} is not allowed by the sandbox's policy in its current stage`, db.authority);
    res.writeHead(200, { "content-type": "text/plain; charset=utf-8", "content-length": "0" }).end();
    return { destinationHost: db.authority, reasonCode: "proxied", status: 200, bytes: 0, service: "sumdb" };
  }
  const kind = sumdbPathKind(rest, db);
  requireAllowed(caller, db.host, db.port);
  const url = new URL(`https://${db.authority}/${rest}`);
  const request = await downloadRequest(ctx, url);
  if (kind === "full-tile") {
    const result = await cachedFetch(ctx, caller, { key: `sumdb ${url.href}`, url, request, keepHeaders: ["content-type"] });
    const sent = await sendCached(ctx, res, result, head);
    return { destinationHost: db.authority, reasonCode: result.kind === "stored" && result.fromCache ? "cached" : "proxied", service: "sumdb", ...sent };
  }
  const upstream = await ctx.upstream.fetch(caller, url, { ...request, method: "GET" });
  const body = await readUpstreamBody(upstream, MAX_SUMDB_PASSTHROUGH_BYTES, db.authority, "the checksum database's answer");
  const contentType = typeof upstream.headers["content-type"] === "string" ? upstream.headers["content-type"] : "text/plain; charset=utf-8";
  res.writeHead(upstream.status, { "content-type": contentType, "content-length": String(body.length) }).end(head ? undefined : body);
  return { destinationHost: db.authority, reasonCode: "proxied", status: upstream.status, bytes: head ? 0 : body.length, service: "sumdb" };
}

/** Full tiles never change; lookups, partial tiles and /latest move with the tree. */
function sumdbPathKind(rest: string, db: UpstreamHost): "full-tile" | "moving" {
  if (rest === "latest") return "moving";
  if (SUMDB_TILE.test(rest)) return rest.includes(".p/") ? "moving" : "full-tile";
  const lookup = /^lookup\/(.+)@([^@/]+)$/.exec(rest);
  if (lookup) {
    parseModulePath(lookup[1]!, db.authority);
    const version = unescapeCase(lookup[2]!);
    if (version !== undefined && version.length <= MAX_VERSION_CHARS && SEMVER.test(version)) return "moving";
  }
  throw invalidRequest("not a checksum database path: expected supported, latest, lookup/<module>@<version> or tile/…", db.authority);
}
