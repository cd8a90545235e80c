/**
 * The gateway's only way out: HTTP(S) to upstreams with every hop checked. A hop's host:port must be allowed
 * by the caller's active stage (unless the route vouches for the first hop, e.g. an operator-mapped registry),
 * its address must pass the address guard, redirects are followed here on the host and never by the guest,
 * and credentials are sent only to the origin they were issued for.
 */
import { readFileSync } from "node:fs";
import { isIP, type LookupFunction } from "node:net";
import { rootCertificates } from "node:tls";
import { Agent, type Dispatcher } from "undici";
import { callerAllows } from "./caller-policy.ts";
import { addressGuard, type AddressGuard } from "./address-guard.ts";
import { GatewayRefusal, hostNotAllowed, upstreamError } from "./refusal.ts";
import type { GatewayCaller, UpstreamResolver } from "./types.ts";

const MAX_REDIRECTS = 5;
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

export interface UpstreamRequest {
  method?: "GET" | "HEAD" | "POST";
  headers?: Record<string, string>;
  body?: Dispatcher.DispatchOptions["body"];
  /** sent only to the first hop's origin */
  authorization?: string;
  /**
   * The route already decided the first hop may be dialled: it is an operator-configured upstream (policy was
   * checked on the name the guest used, and private addresses are fine). Redirects are still checked.
   */
  trustedFirstHop?: boolean;
  signal?: AbortSignal;
}

export interface UpstreamResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Dispatcher.ResponseData["body"];
  /** the URL that answered, after redirects */
  url: URL;
}

export interface UpstreamClientOptions {
  resolver: UpstreamResolver;
  allowPrivateCidrs?: readonly string[];
  /** extra PEM trusted for upstream TLS, besides the system roots */
  caFile?: string;
}

export class UpstreamClient {
  readonly #guarded: Agent;
  readonly #trusted: Agent;
  readonly #guard: AddressGuard;
  readonly #resolver: UpstreamResolver;

  constructor(opts: UpstreamClientOptions) {
    this.#guard = addressGuard(opts.allowPrivateCidrs);
    this.#resolver = opts.resolver;
    const ca = opts.caFile ? [...rootCertificates, readFileSync(opts.caFile, "utf8")] : undefined;
    const agent = (lookup: LookupFunction) =>
      new Agent({ connect: { lookup, ...(ca ? { ca } : {}), timeout: 15_000 }, headersTimeout: 60_000, bodyTimeout: 120_000, connections: 64 });
    this.#guarded = agent(resolvingLookup(opts.resolver, this.#guard));
    this.#trusted = agent(resolvingLookup(opts.resolver, undefined));
  }

  /** Whether the address guard lets the gateway dial `address` (for routes that dial through other tools, e.g. git). */
  permitsAddress(address: string): boolean {
    return this.#guard.permits(address);
  }

  /**
   * The address a tool that dials by itself (git) must be pinned to: `host` resolved as fetch resolves it, the
   * first answer the address guard permits. Throws host_not_allowed when it permits none, upstream_error when
   * the name does not resolve.
   */
  async resolveForDial(host: string, port: number): Promise<string> {
    let candidates: string[];
    if (isIP(host)) candidates = [host];
    else {
      try {
        candidates = (await this.#resolver.resolve4(host)).map((a) => a.address);
      } catch (err) {
        throw upstreamError(`${host}: ${(err as Error).message}`, host);
      }
    }
    const usable = candidates.find((address) => this.#guard.permits(address));
    if (!usable) throw hostNotAllowed(`${host}:${port}`);
    return usable;
  }

  /** Sends the request, following up to 5 redirects; each hop is checked as described above. */
  async fetch(caller: GatewayCaller, url: URL, req: UpstreamRequest = {}): Promise<UpstreamResponse> {
    let current = url;
    let method = req.method ?? "GET";
    let body = req.body;
    for (let hop = 0; ; hop++) {
      const trusted = hop === 0 && req.trustedFirstHop === true;
      const host = current.hostname;
      const port = portOf(current);
      if (!trusted) {
        if (current.protocol !== "https:" && current.protocol !== "http:") throw upstreamError(`unsupported scheme ${current.protocol}`, host);
        if (!callerAllows(caller, host, port)) throw hostNotAllowed(`${host}:${port}`);
        if (isIP(host) && !this.#guard.permits(host)) throw hostNotAllowed(`${host}:${port}`);
      }
      const headers: Record<string, string> = { ...req.headers, host: current.host };
      if (req.authorization && current.origin === url.origin) headers.authorization = req.authorization;
      let res: Dispatcher.ResponseData;
      try {
        res = await (trusted ? this.#trusted : this.#guarded).request({
          origin: current.origin,
          path: current.pathname + current.search,
          method,
          headers,
          ...(body !== undefined ? { body } : {}),
          ...(req.signal ? { signal: req.signal } : {}),
        });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ECLEANROOMGUARD") throw hostNotAllowed(`${host}:${port}`);
        throw upstreamError(`${current.host}: ${(err as Error).message}`, current.host);
      }
      const location = res.headers.location;
      if (!REDIRECT_STATUSES.has(res.statusCode) || typeof location !== "string") {
        return { status: res.statusCode, headers: res.headers, body: res.body, url: current };
      }
      await res.body.dump();
      if (hop >= MAX_REDIRECTS) throw upstreamError(`more than ${MAX_REDIRECTS} redirects`, url.host);
      if (body !== undefined && res.statusCode !== 307 && res.statusCode !== 308) {
        method = "GET";
        body = undefined;
      } else if (body !== undefined) {
        throw upstreamError("upstream redirected a request with a body", current.host);
      }
      current = new URL(location, current);
    }
  }

  async close(): Promise<void> {
    await Promise.all([this.#guarded.close(), this.#trusted.close()]);
  }
}

/**
 * Reads a whole upstream body into memory, refusing (upstream_error) one longer than `limitBytes` — by its
 * Content-Length before reading, else as soon as it passes the limit. `what` names it in the refusal.
 */
export async function readUpstreamBody(res: Pick<UpstreamResponse, "headers" | "body">, limitBytes: number, host: string, what = "the upstream's answer"): Promise<Buffer> {
  const tooLarge = () => upstreamError(`refused: ${what} is larger than ${limitBytes} bytes`, host);
  if (Number(res.headers["content-length"]) > limitBytes) {
    res.body.destroy();
    throw tooLarge();
  }
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of res.body) {
      size += chunk.length;
      if (size > limitBytes) throw tooLarge();
      chunks.push(Buffer.from(chunk));
    }
  } catch (err) {
    res.body.destroy();
    throw err instanceof GatewayRefusal ? err : upstreamError(`${host}: reading ${what} failed: ${(err as Error).message}`, host);
  }
  return Buffer.concat(chunks);
}

/** JSON.parse, with undefined for text that is not JSON (upstream bodies are validated by a schema after). */
export function parseJsonOrUndefined(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

export function portOf(url: URL): number {
  return url.port ? Number(url.port) : url.protocol === "http:" ? 80 : 443;
}

/** DNS through the daemon's resolver (A records only), each answer checked by the guard when there is one. */
function resolvingLookup(resolver: UpstreamResolver, guard: AddressGuard | undefined): LookupFunction {
  return ((hostname: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) => {
    resolver.resolve4(hostname).then(
      (answers) => {
        const usable = answers.map((a) => a.address).filter((a) => !guard || guard.permits(a));
        if (usable.length === 0) {
          const err = Object.assign(new Error(`${hostname} resolves only to addresses the gateway does not dial`), { code: "ECLEANROOMGUARD" });
          return callback(err);
        }
        if (options.all) callback(null, usable.map((address) => ({ address, family: 4 })));
        else callback(null, usable[0], 4);
      },
      (err: unknown) => callback(err),
    );
  }) as LookupFunction;
}
