// The HTTPS front of an exposure: TLS on 127.0.0.1 with certificates from the local CA, requests routed by Host to a
// guest port, proxied over sandbox port dials. The Host header reaches the guest unchanged, with trusted
// X-Forwarded-{For,Host,Proto,Port}; WebSocket upgrades become raw tunnels; responses stream as they come.
import { once } from "node:events";
import { Agent, request as httpRequest, type ClientRequestArgs, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { SecureContext } from "node:tls";
import { CleanroomError } from "../errors/index.ts";
import type { ExposureCa } from "./local-ca.ts";
import { hostWithoutPort, matchRoute, routeUrl, type HttpsRoute } from "./routes.ts";
import { tunnel } from "./tunnel.ts";

/** Cleanroom's usual HTTPS exposure port; when another process holds it, an ephemeral one is used instead. */
export const DEFAULT_HTTPS_EXPOSURE_PORT = 8143;
/** an idle pooled connection to the guest closes after this long (its dial helper in the sandbox exits with it) */
const IDLE_GUEST_CONNECTION_MS = 30_000;
const MAX_CONNECTIONS_PER_PORT = 256;

/** A connection into the sandbox that node's http.Agent can pool (see SandboxPortConnection in the SDK). */
export type PortDialer = (port: number) => Promise<Duplex>;

export interface HttpsExposureOptions {
  routes: HttpsRoute[];
  dial: PortDialer;
  ca: ExposureCa;
  /** where to listen on 127.0.0.1 (default 8143; if taken, any free port) */
  port?: number;
  /** a line about something that went wrong for one request (the client got a 502 saying the same) */
  warn?: (line: string) => void;
}

export interface HttpsExposure {
  readonly port: number;
  /** one https:// address per route */
  urls(): string[];
  close(): Promise<void>;
}

const HOP_BY_HOP = new Set(["connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade"]);
const CLIENT_FORWARDING = new Set(["forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-forwarded-port"]);

/** http.Agent whose connections are sandbox port dials: pooled and kept alive like TCP connections. */
class GuestPortAgent extends Agent {
  readonly #dial: () => Promise<Duplex>;

  constructor(dial: () => Promise<Duplex>) {
    super({ keepAlive: true, maxSockets: MAX_CONNECTIONS_PER_PORT, maxFreeSockets: 32, timeout: IDLE_GUEST_CONNECTION_MS, scheduling: "lifo" });
    this.#dial = dial;
  }

  override createConnection(_options: ClientRequestArgs, callback?: (err: Error | null, stream: Duplex) => void): undefined {
    this.#dial().then((stream) => callback?.(null, stream), (err: Error) => callback?.(err, undefined as unknown as Duplex));
    return undefined;
  }
}

export async function startHttpsExposure(opts: HttpsExposureOptions): Promise<HttpsExposure> {
  const { routes, ca } = opts;
  const agents = new Map<number, GuestPortAgent>();
  const agentFor = (port: number) => {
    let agent = agents.get(port);
    if (!agent) agents.set(port, (agent = new GuestPortAgent(() => opts.dial(port))));
    return agent;
  };
  const clientSockets = new Set<Socket>();
  let listenPort = 0;

  const fallback = await ca.fallbackCredentials();
  const server: Server = createServer({
    ...fallback,
    ALPNProtocols: ["http/1.1"],
    SNICallback: (servername: string, answer: (err: Error | null, context?: SecureContext) => void) => {
      // a name no route serves gets the generic certificate: the client's own check then says what is wrong
      if (!matchRoute(routes, servername)) return answer(null, undefined);
      ca.contextFor(servername).then((context) => answer(null, context), (err: Error) => answer(err));
    },
  });
  server.on("connection", (socket: Socket) => {
    clientSockets.add(socket);
    socket.once("close", () => clientSockets.delete(socket));
  });
  server.on("tlsClientError", () => undefined); // a client refusing the certificate is its business
  server.on("request", (req: IncomingMessage, res: ServerResponse) => {
    const route = matchRoute(routes, req.headers.host ?? "");
    if (!route) return plainAnswer(res, 404, noRouteMessage(req.headers.host, routes, listenPort));
    const upstream = httpRequest({
      agent: agentFor(route.port),
      method: req.method,
      path: req.url,
      headers: forwardedHeaders(req, { upgrade: false }),
      setHost: false,
    });
    upstream.once("response", (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.statusMessage, withoutHopByHop(answer.rawHeaders));
      res.flushHeaders(); // a streaming answer (server-sent events, long polls) starts reaching the client now
      pipeline(answer, res).catch(() => undefined);
    });
    upstream.once("error", (err) => {
      opts.warn?.(`${req.headers.host ?? "?"} → port ${route.port}: ${err.message}`);
      if (!res.headersSent) plainAnswer(res, 502, `cleanroom: nothing answered on port ${route.port} in the sandbox: ${err.message}\n`);
      else res.destroy(err);
    });
    res.once("close", () => {
      if (!res.writableFinished) upstream.destroy(); // the client left mid-answer: so does the guest connection
    });
    pipeline(req, upstream).catch(() => undefined);
  });
  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const route = matchRoute(routes, req.headers.host ?? "");
    if (!route) return rawAnswer(socket, 404, noRouteMessage(req.headers.host, routes, listenPort));
    opts.dial(route.port).then((guest) => {
      const headers = forwardedHeaders(req, { upgrade: true });
      let requestHead = `${req.method} ${req.url} HTTP/1.1\r\n`;
      for (let i = 0; i < headers.length; i += 2) requestHead += `${headers[i]}: ${headers[i + 1]}\r\n`;
      guest.write(`${requestHead}\r\n`);
      if (head.length) guest.write(head);
      // from here the guest's 101 (or refusal) and the frames pass through untouched, both ways
      tunnel(socket, guest).catch(() => undefined);
    }, (err: Error) => {
      opts.warn?.(`${req.headers.host ?? "?"} → port ${route.port} (upgrade): ${err.message}`);
      rawAnswer(socket, 502, `cleanroom: nothing answered on port ${route.port} in the sandbox: ${err.message}\n`);
    });
  });

  listenPort = await listenOnLoopback(server, opts.port ?? DEFAULT_HTTPS_EXPOSURE_PORT);
  return {
    port: listenPort,
    urls: () => routes.map((route) => `${routeUrl(route, listenPort)} → port ${route.port}`),
    close: async () => {
      const closed = new Promise((resolve) => server.close(resolve));
      for (const socket of clientSockets) socket.destroy();
      for (const agent of agents.values()) agent.destroy();
      await closed;
    },
  };
}

/** Listens on 127.0.0.1:`preferred`, or on any free loopback port when that one is taken. */
async function listenOnLoopback(server: Server, preferred: number): Promise<number> {
  for (const port of preferred ? [preferred, 0] : [0]) {
    server.listen(port, "127.0.0.1");
    try {
      await once(server, "listening");
      const address = server.address();
      return typeof address === "object" && address ? address.port : port;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EADDRINUSE" || port === 0) {
        throw new CleanroomError("failed_precondition", `cannot listen on 127.0.0.1:${port} for HTTPS exposure: ${(err as Error).message}`);
      }
    }
  }
  throw new CleanroomError("internal", "unreachable: listening on port 0 either works or throws");
}

/**
 * The request's headers for the guest, as a flat [name, value, …] list in the client's order and spelling: Host
 * unchanged, hop-by-hop headers dropped (kept for an upgrade, which needs them), the client's own forwarding headers
 * replaced by what this proxy knows.
 */
function forwardedHeaders(req: IncomingMessage, opts: { upgrade: boolean }): string[] {
  const connectionListed = new Set(String(req.headers.connection ?? "").toLowerCase().split(",").map((t) => t.trim()).filter(Boolean));
  const out: string[] = [];
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i]!;
    const lower = name.toLowerCase();
    if (CLIENT_FORWARDING.has(lower)) continue;
    if (!opts.upgrade && (HOP_BY_HOP.has(lower) || connectionListed.has(lower))) continue;
    out.push(name, req.rawHeaders[i + 1]!);
  }
  const host = req.headers.host ?? "";
  const explicitPort = host.slice(hostWithoutPort(host).length).replace(/^\]?:/, "");
  out.push(
    "X-Forwarded-For", req.socket.remoteAddress ?? "127.0.0.1",
    "X-Forwarded-Host", host,
    "X-Forwarded-Proto", "https",
    "X-Forwarded-Port", explicitPort || "443", // no port in Host: the client used https's own
  );
  return out;
}

function withoutHopByHop(rawHeaders: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (!HOP_BY_HOP.has(rawHeaders[i]!.toLowerCase())) out.push(rawHeaders[i]!, rawHeaders[i + 1]!);
  }
  return out;
}

function noRouteMessage(host: string | undefined, routes: HttpsRoute[], listenPort: number): string {
  return `cleanroom: no exposure route for ${JSON.stringify(host ?? "")}; this exposure serves:\n${routes.map((r) => `  ${routeUrl(r, listenPort)}\n`).join("")}`;
}

function plainAnswer(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { "Content-Type": "text/plain; charset=utf-8", "Content-Length": Buffer.byteLength(body) });
  res.end(body);
}

function rawAnswer(socket: Duplex, status: number, body: string): void {
  const reason = status === 404 ? "Not Found" : "Bad Gateway";
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
}
