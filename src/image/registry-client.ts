import { isIP } from "node:net";
import { CleanroomError, messageOf } from "../errors/index.ts";
import type { Logger } from "../observability/index.ts";
import { DOCKER_HUB, type ImageRef } from "./ref.ts";
import { basicHeader, fetchBearerToken, parseChallenge, readTextBounded, type AuthChallenge, type BearerToken, type Credentials } from "./registry-auth.ts";

export interface RegistryOptions {
  /** host:port allowed over plain http; 127.0.0.1/localhost/[::1] always are */
  insecureHosts?: string[];
  credentials?: (registryHost: string) => Promise<{ username: string; password: string } | undefined>;
}

const MAX_REDIRECTS = 5;
const REQUEST_TIMEOUT_MS = 60_000;

function isLoopbackHost(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, "").toLowerCase();
  if (h === "localhost" || h === "::1") return true;
  return isIP(h) === 4 && h.startsWith("127.");
}

/** HTTP access to one or more OCI distribution v2 registries: auth, redirects, scheme rules. */
export class RegistryClient {
  private readonly insecure: Set<string>;
  private readonly credentials: RegistryOptions["credentials"];
  private readonly logger: Logger | undefined;
  private readonly challenges = new Map<string, AuthChallenge>();
  private readonly tokens = new Map<string, BearerToken>();

  constructor(opts: RegistryOptions = {}, logger?: Logger) {
    this.insecure = new Set((opts.insecureHosts ?? []).map((h) => h.toLowerCase()));
    this.credentials = opts.credentials;
    this.logger = logger;
  }

  /** The API endpoint host for a registry name (Docker Hub's API lives elsewhere). */
  endpointHost(registry: string): string {
    return registry === DOCKER_HUB ? "registry-1.docker.io" : registry;
  }

  private plainHttpAllowed(host: string, hostname: string): boolean {
    return isLoopbackHost(hostname) || this.insecure.has(host.toLowerCase());
  }

  baseUrl(registry: string): string {
    const host = this.endpointHost(registry);
    const hostname = new URL(`http://${host}`).hostname;
    return `${this.plainHttpAllowed(host, hostname) ? "http" : "https"}://${host}`;
  }

  /** Refuses plain http to anything but loopback and configured insecure hosts. */
  checkUrl(u: URL): void {
    if (u.protocol === "https:") return;
    if (u.protocol === "http:" && this.plainHttpAllowed(u.host, u.hostname)) return;
    throw new CleanroomError("registry_error", `refusing ${u.protocol}//${u.host}: only https is allowed (plain http only for loopback or hosts listed in insecureHosts)`);
  }

  /**
   * GET `path` (under /v2/) for `ref`'s repository with pull auth. Follows redirects itself so that
   * the Authorization header never leaves the registry's origin. Returns the final response (any status).
   */
  async get(ref: ImageRef, path: string, headers: Record<string, string>, signal?: AbortSignal): Promise<Response> {
    return (await this.open(ref, path, headers, signal)).res;
  }

  /** Like get(), plus `abort()` to tear down the body (used as an idle watchdog while streaming blobs). */
  async open(ref: ImageRef, path: string, headers: Record<string, string>, userSignal?: AbortSignal): Promise<{ res: Response; abort: () => void }> {
    const ctl = new AbortController();
    const signal = userSignal ? AbortSignal.any([userSignal, ctl.signal]) : ctl.signal;
    const abort = () => ctl.abort(new CleanroomError("registry_error", `registry ${ref.registry} stopped sending data`));
    return { res: await this.authorizedGet(ref, path, headers, signal, userSignal), abort };
  }

  private async authorizedGet(ref: ImageRef, path: string, headers: Record<string, string>, signal: AbortSignal, userSignal: AbortSignal | undefined): Promise<Response> {
    const url = `${this.baseUrl(ref.registry)}/v2/${ref.repository}/${path}`;
    const scope = `repository:${ref.repository}:pull`;
    let res = await this.send(url, headers, await this.authorization(ref.registry, scope, userSignal), signal);
    if (res.status === 401) {
      await res.body?.cancel().catch(() => {});
      const challenge = parseChallenge(res.headers.get("www-authenticate"));
      if (!challenge) throw new CleanroomError("registry_error", `${ref.registry} answered 401 without a usable WWW-Authenticate challenge`);
      this.challenges.set(ref.registry, challenge);
      this.tokens.delete(`${ref.registry}|${scope}`);
      const auth = await this.authorization(ref.registry, scope, userSignal, true);
      res = await this.send(url, headers, auth, signal);
      if (res.status === 401) {
        await res.body?.cancel().catch(() => {});
        throw new CleanroomError("registry_error", `${ref.registry} refused our credentials for ${ref.repository} (HTTP 401); check the credentials configured for this registry`);
      }
    }
    return res;
  }

  private async authorization(registry: string, scope: string, signal?: AbortSignal, fresh = false): Promise<string | undefined> {
    const challenge = this.challenges.get(registry);
    if (!challenge) return undefined;
    const creds = await this.lookupCredentials(registry);
    if (challenge.scheme === "basic") {
      if (!creds) throw new CleanroomError("registry_error", `${registry} requires a username and password; configure credentials for it`);
      return basicHeader(creds);
    }
    const key = `${registry}|${scope}`;
    const cached = this.tokens.get(key);
    if (cached && !fresh && cached.expiresAtMs > Date.now()) return `Bearer ${cached.token}`;
    const token = await fetchBearerToken(challenge, scope, creds, (u) => this.checkUrl(u), signal);
    this.tokens.set(key, token);
    return `Bearer ${token.token}`;
  }

  private async lookupCredentials(registry: string): Promise<Credentials | undefined> {
    if (!this.credentials) return undefined;
    try {
      return await this.credentials(registry);
    } catch (e) {
      throw new CleanroomError("registry_error", `looking up credentials for ${registry} failed: ${messageOf(e)}`);
    }
  }

  private async send(start: string, headers: Record<string, string>, authorization: string | undefined, signal: AbortSignal): Promise<Response> {
    let url = new URL(start);
    const origin = url.origin;
    for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
      this.checkUrl(url);
      const h: Record<string, string> = { ...headers, "user-agent": "cleanroom" };
      // credentials go to the registry's own origin only, never to a CDN it redirects to
      if (authorization && url.origin === origin) h.authorization = authorization;
      let res: Response;
      // the timeout covers connecting and the response headers; body stalls are the reader's watchdog
      const headersCtl = new AbortController();
      const timer = setTimeout(() => headersCtl.abort(), REQUEST_TIMEOUT_MS);
      try {
        res = await fetch(url, { headers: h, redirect: "manual", signal: AbortSignal.any([signal, headersCtl.signal]) });
      } catch (e) {
        if (signal.aborted) throw new CleanroomError("registry_error", `request to ${url.host} was cancelled`);
        if (headersCtl.signal.aborted) throw new CleanroomError("registry_error", `registry ${url.host} did not answer within ${REQUEST_TIMEOUT_MS / 1000} s`);
        const cause = (e as { cause?: unknown }).cause;
        throw new CleanroomError("registry_error", `cannot reach registry ${url.host}: ${messageOf(e)}${cause ? ` (${messageOf(cause)})` : ""}; check the address and network, and insecureHosts for plain-http registries`);
      } finally {
        clearTimeout(timer);
      }
      const location = res.headers.get("location");
      if (res.status >= 300 && res.status < 400 && location) {
        await res.body?.cancel().catch(() => {});
        url = new URL(location, url);
        this.logger?.debug({ to: url.host }, "registry redirect");
        continue;
      }
      return res;
    }
    throw new CleanroomError("registry_error", `too many redirects fetching ${start}`);
  }

  /** Turns an unexpected response into a registry_error (or image_not_found for 404). */
  async failure(res: Response, what: string): Promise<CleanroomError> {
    const body = (await readTextBounded(res, 2048).catch(() => "")).replace(/\s+/g, " ").trim();
    if (res.status === 404) return new CleanroomError("image_not_found", `${what} was not found in the registry (HTTP 404); check the name, tag and digest`);
    if (res.status === 403) return new CleanroomError("registry_error", `access to ${what} was denied (HTTP 403); check the credentials for this registry: ${body.slice(0, 300)}`);
    return new CleanroomError("registry_error", `fetching ${what} failed with HTTP ${res.status}: ${body.slice(0, 300)}`);
  }
}
