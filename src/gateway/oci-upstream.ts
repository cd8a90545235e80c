/**
 * OCI registries as upstreams: which base URL a registry name the guest used maps to (and which host:port policy
 * checks for it), and requests to it with the distribution auth dance — a 401 with a Bearer challenge gets a
 * token from the realm (a hop checked against policy like any other), a Basic challenge gets the credential chain's
 * header. Tokens are cached per registry and scope until they expire. Everything goes through ctx.upstream.fetch.
 */
import { z } from "zod";
import { requireAllowed } from "./caller-policy.ts";
import { GatewayRefusal, upstreamError } from "./refusal.ts";
import { parseUpstreamHost } from "./request-path.ts";
import type { GatewayContext } from "./route.ts";
import { parseJsonOrUndefined, readUpstreamBody, type UpstreamResponse } from "./upstream-client.ts";
import type { GatewayCaller, GatewaySettings } from "./types.ts";

/** Docker Hub's registry name and where its API lives; ghcr.io, quay.io, public.ecr.aws and others are https://<name>. */
const DOCKER_HUB = "docker.io";
const DOCKER_HUB_API = "registry-1.docker.io";
const TOKEN_BODY_BYTES = 64 * 1024;
const MAX_TOKEN_CHARS = 16 * 1024;
const DEFAULT_TOKEN_SECONDS = 60;
const BASIC_REUSE_MS = 5 * 60_000;
const MAX_CACHED_AUTHORIZATIONS = 1024;

export interface OciRegistry {
  /** the registry as the guest named it, lowercased: "docker.io", "ghcr.io", "registry.test", "host:5000" */
  name: string;
  /** what policy must allow before any upstream request (Docker Hub: registry-1.docker.io:443) */
  policyHost: string;
  policyPort: number;
  /** policyHost, with the port when not 443: the audit event's destination */
  authority: string;
  /** upstream base URL (any path prefix kept, no trailing slash) */
  base: URL;
  /** operator-configured (`gateway.oci.registries`): the first hop is dialled without a policy or address check */
  trusted: boolean;
  /** Docker Hub keeps single-component names under library/ */
  dockerHub: boolean;
}

/** Maps a registry name from a guest path to its upstream; `gateway.oci.registries` overrides the built-ins. */
export function resolveRegistry(segment: string | undefined, settings: GatewaySettings): OciRegistry {
  const named = parseUpstreamHost(segment);
  const configured = configuredRegistry(named.authority, settings);
  const dockerHub = named.authority === DOCKER_HUB;
  const policy = dockerHub ? { host: DOCKER_HUB_API, port: 443 } : named;
  const base = configured ?? new URL(`https://${dockerHub ? DOCKER_HUB_API : named.authority}`);
  return {
    name: named.authority,
    policyHost: policy.host,
    policyPort: policy.port,
    authority: policy.port === 443 ? policy.host : `${policy.host}:${policy.port}`,
    base,
    trusted: configured !== undefined,
    dockerHub,
  };
}

function configuredRegistry(authority: string, settings: GatewaySettings): URL | undefined {
  for (const [name, target] of Object.entries(settings.ociRegistries ?? {})) {
    if (parseUpstreamHost(name).authority !== authority) continue;
    const url = URL.canParse(target) ? new URL(target) : undefined;
    if (!url || (url.protocol !== "https:" && url.protocol !== "http:") || url.username || url.password || url.search) {
      throw upstreamError(`gateway.oci.registries maps ${name} to something that is not an http(s) base URL`, authority);
    }
    url.pathname = url.pathname.replace(/\/+$/, "");
    return url;
  }
  return undefined;
}

/** A registry that could not be reached at all (as opposed to one that answered): tags may then come from cache. */
export class RegistryUnreachable extends GatewayRefusal {
  constructor(registry: OciRegistry) {
    super("upstream_error", 502, `registry ${registry.name} could not be reached`, registry.authority);
    this.name = "RegistryUnreachable";
  }
}

export interface OciUpstreamRequest {
  method: "GET" | "HEAD";
  /** the path after `/v2/`, already validated and encoded (e.g. "library/alpine/manifests/3.20") */
  apiPath: string;
  /** the query string without "?" ("" when none) */
  query?: string;
  accept: string;
  /** the token scope the request needs, e.g. "repository:library/alpine:pull" */
  scope: string;
}

interface CachedAuthorization {
  value: string;
  expiresAtMs: number;
}

/** Per-gateway registry client state (tokens), found from the gateway's context. */
export class OciUpstream {
  readonly #ctx: GatewayContext;
  readonly #authorizations = new Map<string, CachedAuthorization>();

  constructor(ctx: GatewayContext) {
    this.#ctx = ctx;
  }

  /** Sends the request, authenticating once when challenged. Policy on the registry name is checked first. */
  async fetch(caller: GatewayCaller, registry: OciRegistry, req: OciUpstreamRequest): Promise<UpstreamResponse> {
    requireAllowed(caller, registry.policyHost, registry.policyPort);
    const url = new URL(`${registry.base.href.replace(/\/+$/, "")}/v2/${req.apiPath}${req.query ? `?${req.query}` : ""}`);
    const cacheKey = `${registry.name} ${req.scope}`;
    const cached = this.#authorizations.get(cacheKey);
    const reused = cached && cached.expiresAtMs > Date.now() ? cached.value : undefined;
    const first = await this.#send(caller, registry, url, req, reused);
    if (first.status !== 401) return first;
    const authorization = await this.#answerChallenge(caller, registry, url, req.scope, first.headers["www-authenticate"]);
    if (!authorization) return first;
    await first.body.dump();
    this.#remember(cacheKey, authorization);
    const second = await this.#send(caller, registry, url, req, authorization.value);
    if (second.status === 401) this.#authorizations.delete(cacheKey);
    return second;
  }

  async #send(caller: GatewayCaller, registry: OciRegistry, url: URL, req: OciUpstreamRequest, authorization: string | undefined): Promise<UpstreamResponse> {
    try {
      return await this.#ctx.upstream.fetch(caller, url, {
        method: req.method,
        headers: { accept: req.accept, "user-agent": "cleanroom-gateway" },
        ...(authorization ? { authorization } : {}),
        trustedFirstHop: registry.trusted,
      });
    } catch (err) {
      if (err instanceof GatewayRefusal && err.reasonCode !== "upstream_error") throw err;
      // the operator's upstream address stays in the daemon log, not in the guest's answer
      this.#ctx.logger.warn({ destination_host: registry.authority, err: (err as Error).message }, "registry unreachable");
      throw new RegistryUnreachable(registry);
    }
  }

  /** The Authorization header that answers a 401's challenge, or undefined when there is nothing to answer with. */
  async #answerChallenge(caller: GatewayCaller, registry: OciRegistry, url: URL, scope: string, header: string | string[] | undefined): Promise<CachedAuthorization | undefined> {
    const challenges = (Array.isArray(header) ? header : header ? [header] : []).map(parseAuthChallenge);
    const bearer = challenges.find((c) => c?.scheme === "bearer");
    if (bearer) return this.#bearerToken(caller, registry, bearer.params, scope);
    if (!challenges.some((c) => c?.scheme === "basic")) return undefined;
    const value = await this.#ctx.credentials.authorizationFor(url, "http");
    return value ? { value, expiresAtMs: Date.now() + BASIC_REUSE_MS } : undefined;
  }

  async #bearerToken(caller: GatewayCaller, registry: OciRegistry, params: Record<string, string>, scope: string): Promise<CachedAuthorization> {
    const realm = params.realm && URL.canParse(params.realm) ? new URL(params.realm) : undefined;
    if (!realm || (realm.protocol !== "https:" && realm.protocol !== "http:") || realm.username || realm.password) {
      throw upstreamError(`registry ${registry.name} named no usable token realm`, registry.authority);
    }
    if (params.service) realm.searchParams.set("service", params.service);
    realm.searchParams.set("scope", params.scope || scope);
    const credential = await this.#ctx.credentials.authorizationFor(realm, "http");
    // the realm is a hop like any other: its host:port must be allowed (ctx.upstream.fetch checks it)
    const res = await this.#ctx.upstream.fetch(caller, realm, {
      headers: { accept: "application/json", "user-agent": "cleanroom-gateway" },
      ...(credential ? { authorization: credential } : {}),
    });
    const text = (await readUpstreamBody(res, TOKEN_BODY_BYTES, registry.authority, "the token realm's answer")).toString("utf8");
    if (res.status !== 200) throw upstreamError(`the token service ${realm.host} answered HTTP ${res.status}`, registry.authority);
    const parsed = TOKEN_RESPONSE.safeParse(parseJsonOrUndefined(text));
    const token = parsed.success ? (parsed.data.token ?? parsed.data.access_token) : undefined;
    if (!parsed.success || !token) throw upstreamError(`the token service ${realm.host} returned no usable token`, registry.authority);
    const seconds = parsed.data.expires_in ?? DEFAULT_TOKEN_SECONDS;
    // renewed a little early so a token never lapses between lookup and use
    return { value: `Bearer ${token}`, expiresAtMs: Date.now() + Math.max(5, seconds - 10) * 1000 };
  }

  #remember(key: string, authorization: CachedAuthorization): void {
    if (this.#authorizations.size >= MAX_CACHED_AUTHORIZATIONS) {
      const oldest = this.#authorizations.keys().next().value;
      if (oldest !== undefined) this.#authorizations.delete(oldest);
    }
    this.#authorizations.set(key, authorization);
  }
}

const TOKEN = z.string().min(1).max(MAX_TOKEN_CHARS).regex(/^[\x21-\x7e]+$/);
const TOKEN_RESPONSE = z.object({
  token: TOKEN.optional(),
  access_token: TOKEN.optional(),
  expires_in: z.number().int().positive().max(86_400).optional(),
});

const clients = new WeakMap<GatewayContext, OciUpstream>();

/** The registry client of the gateway `ctx` belongs to (its token cache lives as long as the gateway). */
export function ociUpstream(ctx: GatewayContext): OciUpstream {
  let client = clients.get(ctx);
  if (!client) clients.set(ctx, (client = new OciUpstream(ctx)));
  return client;
}

export interface AuthChallenge {
  scheme: "bearer" | "basic";
  params: Record<string, string>;
}

/** Parses one `WWW-Authenticate` value: `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`. */
export function parseAuthChallenge(header: string): AuthChallenge | undefined {
  const m = /^\s*(Bearer|Basic)(?:\s+(.*))?$/i.exec(header.slice(0, 8192));
  if (!m) return undefined;
  const params: Record<string, string> = {};
  const param = /\s*([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))\s*(?:,|$)/y;
  const rest = m[2] ?? "";
  for (let p = param.exec(rest); p; p = param.exec(rest)) {
    params[p[1]!.toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, "$1") : (p[3] ?? "");
    if (param.lastIndex >= rest.length) break;
  }
  return { scheme: m[1]!.toLowerCase() === "bearer" ? "bearer" : "basic", params };
}
