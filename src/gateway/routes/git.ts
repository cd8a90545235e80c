/**
 * /git/<host>[:port]/<repository path>/…: Git smart HTTP, fetch and clone only. Guests keep their upstream URLs
 * (`url.<gateway>/git/<host>/.insteadOf=https://<host>/`). Each info/refs refreshes a bare mirror of the
 * repository on the host (except in the seconds after the daemon refreshed it to resolve a checkout), and both fetch requests are answered from it by `git http-backend`; hosts outside
 * `gateway.git.cache_hosts` (when it is set) are proxied straight to the upstream instead. Pushes are refused.
 */
import type { IncomingMessage } from "node:http";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { requireAllowed } from "../caller-policy.ts";
import { BodyTooLarge, byteLimit, FORWARDED_HEADERS, serveHttpBackend, type GitRequestHeaders } from "../git-http-backend.ts";
import { GitMirrors, isolatedGitEnv, type MirrorUpstream } from "../git-mirror.ts";
import { GatewayRefusal, invalidRequest, methodNotAllowed, upstreamError } from "../refusal.ts";
import { parseUpstreamHost, type GatewayPath, type UpstreamHost } from "../request-path.ts";
import type { GatewayContext, Route, RouteRequest } from "../route.ts";

const MAX_REQUEST_BODY_BYTES = 64 * 1024 ** 2;
const DEFAULT_MAX_RESPONSE_BYTES = 8 * 1024 ** 3;
export const MAX_REPO_SEGMENTS = 16;
export const REPO_SEGMENT = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/;
/** "version=2", or several colon-separated key=value pairs as Git-Protocol allows */
const GIT_PROTOCOL = /^[a-z0-9-]{1,32}=[A-Za-z0-9._-]{1,32}(:[a-z0-9-]{1,32}=[A-Za-z0-9._-]{1,32}){0,7}$/;
const UPLOAD_PACK_REQUEST = "application/x-git-upload-pack-request";
const UPLOAD_PACK_SERVICE = "git-upload-pack";

/** A guest request the route serves: which repository, and which of the two fetch endpoints. */
export interface GitFetchRequest {
  upstream: UpstreamHost;
  /** validated repository path segments, as the upstream URL spells them ("org", "repo.git") */
  repo: string[];
  endpoint: "info/refs" | "git-upload-pack";
}

const mirrorsByContext = new WeakMap<GatewayContext, GitMirrors>();

export const gitRoute: Route = {
  prefix: "git",
  service: "git",
  async handle(request, ctx) {
    const upstream = parseUpstreamHost(request.path.segments[0]);
    requireAllowed(request.caller, upstream.host, upstream.port);
    const git = parseGitFetch(request.method, request.path, upstream);
    const headers = gitRequestHeaders(request.req, git);
    const target: MirrorUpstream = { url: new URL(`https://${upstream.authority}/${git.repo.join("/")}`), host: upstream.host, port: upstream.port, authority: upstream.authority };
    if (!keepsMirror(ctx, upstream)) {
      return { destinationHost: upstream.authority, reasonCode: "proxied", ...(await proxyToUpstream(request, ctx, target, git, headers)) };
    }
    const mirrors = mirrorsFor(ctx);
    const reasonCode = git.endpoint === "info/refs" ? await mirrors.refreshUnlessHeld(target) : await mirrors.ensure(target);
    const sent = await serveHttpBackend(
      {
        projectRoot: mirrors.projectRoot,
        pathInfo: `/${mirrors.mirrorName(target.url)}/${git.endpoint}`,
        method: git.endpoint === "info/refs" ? "GET" : "POST",
        query: git.endpoint === "info/refs" ? `service=${UPLOAD_PACK_SERVICE}` : "",
        headers,
        remoteAddress: request.req.socket.remoteAddress ?? "",
        ...(git.endpoint === "git-upload-pack" ? { body: request.req } : {}),
        maxBodyBytes: MAX_REQUEST_BODY_BYTES,
        destinationHost: upstream.authority,
        env: isolatedGitEnv(mirrors.home),
        logger: ctx.logger,
      },
      request.res,
    );
    return { destinationHost: upstream.authority, reasonCode, ...sent };
  },
};

/** Accepts `GET …/info/refs?service=git-upload-pack` and `POST …/git-upload-pack` under a sane repository path. */
export function parseGitFetch(method: string, path: GatewayPath, upstream: UpstreamHost): GitFetchRequest {
  const host = upstream.authority;
  const rest = path.segments.slice(1);
  const last = rest.at(-1);
  const isInfoRefs = rest.length >= 2 && rest.at(-2) === "info" && last === "refs";
  const service = new URLSearchParams(path.query).get("service");
  if (last === "git-receive-pack" || (isInfoRefs && service === "git-receive-pack")) throw methodNotAllowed("git push (git-receive-pack)", host);
  let endpoint: GitFetchRequest["endpoint"];
  if (isInfoRefs) {
    if (method !== "GET") throw methodNotAllowed(method, host);
    if (path.query !== `service=${UPLOAD_PACK_SERVICE}`) throw invalidRequest("only smart HTTP is served: info/refs?service=git-upload-pack", host);
    endpoint = "info/refs";
  } else if (last === UPLOAD_PACK_SERVICE) {
    if (method !== "POST") throw methodNotAllowed(method, host);
    if (path.query !== "") throw invalidRequest("git-upload-pack takes no query string", host);
    endpoint = "git-upload-pack";
  } else {
    throw invalidRequest("not a Git fetch: only info/refs?service=git-upload-pack and git-upload-pack are served (no dumb HTTP, no push)", host);
  }
  const repo = rest.slice(0, endpoint === "info/refs" ? -2 : -1);
  if (path.trailingSlash || repo.length === 0 || repo.length > MAX_REPO_SEGMENTS || !repo.every((s) => REPO_SEGMENT.test(s))) {
    throw invalidRequest("a repository path is 1 to 16 segments of [A-Za-z0-9._-], none starting with a dot", host);
  }
  return { upstream, repo, endpoint };
}

/** The guest headers that matter to Git, validated; upload-pack requests must say what they carry. */
function gitRequestHeaders(req: IncomingMessage, git: GitFetchRequest): GitRequestHeaders {
  const host = git.upstream.authority;
  const protocol = req.headers["git-protocol"];
  // a malformed Git-Protocol is dropped, not refused: the guest's git then falls back to protocol v0
  const out: GitRequestHeaders = typeof protocol === "string" && protocol.length <= 256 && GIT_PROTOCOL.test(protocol) ? { gitProtocol: protocol } : {};
  if (git.endpoint !== "git-upload-pack") return out;
  if (req.headers["content-type"] !== UPLOAD_PACK_REQUEST) throw invalidRequest(`git-upload-pack requests must be ${UPLOAD_PACK_REQUEST}`, host);
  out.contentType = UPLOAD_PACK_REQUEST;
  const encoding = req.headers["content-encoding"]?.toLowerCase();
  if (encoding === "gzip" || encoding === "x-gzip") out.contentEncoding = "gzip";
  else if (encoding !== undefined && encoding !== "identity") throw invalidRequest("Content-Encoding must be gzip or absent", host);
  const length = req.headers["content-length"];
  if (length !== undefined) {
    if (!/^\d{1,15}$/.test(length)) throw invalidRequest("malformed Content-Length", host);
    if (Number(length) > MAX_REQUEST_BODY_BYTES) throw invalidRequest(`request body larger than ${MAX_REQUEST_BODY_BYTES} bytes`, host);
    out.contentLength = Number(length);
  }
  return out;
}

/** Without cache_hosts every host gets a mirror; with it, only the hosts (or host:port) it lists. */
function keepsMirror(ctx: GatewayContext, upstream: UpstreamHost): boolean {
  const hosts = ctx.settings.gitCacheHosts;
  if (!hosts) return true;
  return hosts.some((entry) => [upstream.host, upstream.authority].includes(entry.toLowerCase()));
}

/** The one set of mirrors of a gateway: guests' fetches and the daemon's repository lookups share it. */
export function mirrorsFor(ctx: GatewayContext): GitMirrors {
  let mirrors = mirrorsByContext.get(ctx);
  if (!mirrors) {
    mirrors = new GitMirrors({
      root: join(ctx.stateDir, "git"),
      upstream: ctx.upstream,
      credentials: ctx.credentials,
      ...(ctx.settings.upstreamCaFile ? { caFile: ctx.settings.upstreamCaFile } : {}),
      logger: ctx.logger,
    });
    mirrorsByContext.set(ctx, mirrors);
  }
  return mirrors;
}

/** Forwards one fetch request to the upstream through the policy-checked client and streams the answer back. */
async function proxyToUpstream(
  { caller, req, res }: RouteRequest,
  ctx: GatewayContext,
  target: MirrorUpstream,
  git: GitFetchRequest,
  headers: GitRequestHeaders,
): Promise<{ status: number; bytes: number }> {
  const isPost = git.endpoint === "git-upload-pack";
  const url = new URL(`${target.url.href}/${isPost ? UPLOAD_PACK_SERVICE : `info/refs?service=${UPLOAD_PACK_SERVICE}`}`);
  const authorization = await ctx.credentials.authorizationFor(target.url, "git");
  const abort = new AbortController();
  let upstreamFailed = false;
  res.once("close", () => {
    if (!res.writableFinished && !upstreamFailed) abort.abort(); // the guest went away: stop the upstream transfer
  });
  let bodyTooLarge = false;
  const body = isPost ? req.pipe(byteLimit(MAX_REQUEST_BODY_BYTES)).on("error", (err) => (bodyTooLarge ||= err instanceof BodyTooLarge)) : undefined;
  let upstream;
  try {
    upstream = await ctx.upstream.fetch(caller, url, {
      method: isPost ? "POST" : "GET",
      headers: upstreamHeaders(req, headers, isPost),
      ...(body ? { body } : {}),
      ...(authorization ? { authorization } : {}),
      signal: abort.signal,
    });
  } catch (err) {
    if (bodyTooLarge) throw invalidRequest(`request body larger than ${MAX_REQUEST_BODY_BYTES} bytes`, target.authority);
    throw err instanceof GatewayRefusal ? err : upstreamError(`${target.authority}: ${(err as Error).message}`, target.authority);
  }
  const forwarded: Record<string, string> = {};
  for (const name of FORWARDED_HEADERS) {
    const value = upstream.headers[name];
    if (typeof value === "string") forwarded[name] = value;
  }
  res.writeHead(upstream.status, forwarded);
  let bytes = 0;
  const limited = byteLimit(ctx.settings.maxObjectBytes ?? DEFAULT_MAX_RESPONSE_BYTES, (n) => (bytes += n));
  // whichever side failed first decides the audit: a broken upstream is an error, a guest that left is not
  for (const side of [upstream.body, limited]) side.on("error", () => (upstreamFailed ||= !abort.signal.aborted));
  try {
    await pipeline(upstream.body, limited, res);
  } catch {
    if (!abort.signal.aborted) throw upstreamError("the upstream's answer broke off", target.authority);
  }
  return { status: upstream.status, bytes };
}

function upstreamHeaders(req: IncomingMessage, h: GitRequestHeaders, isPost: boolean): Record<string, string> {
  const agent = req.headers["user-agent"];
  return {
    // some Git hosts answer smart HTTP only to a git/ user agent
    "user-agent": typeof agent === "string" && /^git\/[\x20-\x7e]{1,200}$/.test(agent) ? agent : "git/2 (cleanroom-gateway)",
    accept: isPost ? "application/x-git-upload-pack-result" : "*/*",
    ...(h.gitProtocol ? { "git-protocol": h.gitProtocol } : {}),
    ...(h.contentType ? { "content-type": h.contentType } : {}),
    ...(h.contentEncoding ? { "content-encoding": h.contentEncoding } : {}),
    ...(h.contentLength !== undefined ? { "content-length": String(h.contentLength) } : {}),
  };
}
