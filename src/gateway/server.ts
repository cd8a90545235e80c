import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { join } from "node:path";
import { messageOf } from "../errors/index.ts";
import { ContentStore, IntegrityMismatch, ObjectTooLarge } from "./content-store.ts";
import { credentialChain } from "./credentials.ts";
import { GATEWAY_HOSTNAME, guestEnvironment } from "./guest-env.ts";
import { GatewayRefusal, invalidRequest, upstreamError } from "./refusal.ts";
import { isGatewayHostHeader, parseGatewayPath } from "./request-path.ts";
import type { GatewayContext, Route, RouteOutcome } from "./route.ts";
import { RepositoryLookup } from "./repository-lookup.ts";
import { mirrorsFor } from "./routes/git.ts";
import { gatewayRoutes } from "./routes/index.ts";
import { UpstreamClient } from "./upstream-client.ts";
import type { GatewayAuditEvent, GatewayCaller, GatewayOptions } from "./types.ts";

const DEFAULT_MAX_OBJECT_BYTES = 8 * 1024 ** 3;
const AUDIT_PATH_CHARS = 256;

/** The running gateway: its port (the network's rules admit it) and what guests need to use it. */
export interface Gateway {
  readonly port: number;
  /** the URL guests use, by name (the sandbox's /etc/hosts and DNS map it to its host address) */
  readonly url: string;
  /** env entries pointing guest tools at the gateway for what `caller`'s active stage allows */
  guestEnvironment(caller: Pick<GatewayCaller, "rules" | "allowAll">): string[];
  /** the daemon's own repository questions (which commit, which policy file), answered from the Git mirrors */
  readonly repositories: RepositoryLookup;
  /** `doctor` lines: where it listens, which upstreams have credentials (never values), a GitHub App that cannot load */
  diagnose(): { name: string; ok: boolean; detail: string }[];
  /**
   * Where the transport caches live, for storage accounting and pruning: one bare repository per upstream under
   * `mirrors` (re-cloned on next use when removed), content blobs under `content` (a missing blob is re-fetched).
   */
  readonly cacheDirs: { mirrors: string; content: string };
  close(): Promise<void>;
}

/** Starts the gateway server (`--gateway-listen`). Only connections from sandbox addresses are served. */
export async function startGateway(opts: GatewayOptions): Promise<Gateway> {
  const settings = opts.settings ?? {};
  const publicHost = opts.publicHost ?? GATEWAY_HOSTNAME;
  const log = opts.logger.child({ component: "gateway" });
  const store = new ContentStore(join(opts.stateDir, "content"), settings.maxObjectBytes ?? DEFAULT_MAX_OBJECT_BYTES);
  await store.open();
  const upstream = new UpstreamClient({
    resolver: opts.resolver,
    ...(settings.allowPrivateCidrs ? { allowPrivateCidrs: settings.allowPrivateCidrs } : {}),
    ...(settings.upstreamCaFile ? { caFile: settings.upstreamCaFile } : {}),
  });
  const credentials = credentialChain({
    env: opts.env ?? process.env,
    ...(settings.credentialEnv ? { tokenEnv: settings.credentialEnv } : {}),
    ...(settings.githubApp ? { githubApp: settings.githubApp } : {}),
    logger: log,
  });
  const context: GatewayContext = { upstream, store, credentials, settings, stateDir: opts.stateDir, logger: log };
  const routes = new Map(gatewayRoutes().map((route) => [route.prefix, route]));
  const { host, port } = parseGatewayListen(opts.listen);

  let listeningPort = port;
  const server: Server = createServer({ maxHeaderSize: 16 * 1024, requestTimeout: 60_000 }, (req, res) => {
    void serve(req, res);
  });
  server.on("connection", (socket: Socket) => {
    // not a sandbox (or a sandbox reaching another's host address): closed before a byte is read
    if (!callerOf(socket)) socket.destroy();
  });

  function callerOf(socket: Socket): GatewayCaller | undefined {
    const remote = unmapped(socket.remoteAddress);
    const local = unmapped(socket.localAddress);
    return remote && local ? opts.callers(remote, local) : undefined;
  }

  async function serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    const caller = callerOf(req.socket);
    if (!caller) {
      req.socket.destroy();
      return;
    }
    const method = req.method ?? "GET";
    let route: Route | undefined;
    let auditPath = "";
    let outcome: RouteOutcome;
    try {
      if (!isGatewayHostHeader(req.headers.host, GATEWAY_HOSTNAME, unmapped(req.socket.localAddress) ?? "", listeningPort)) {
        throw invalidRequest(`the Host header must name ${GATEWAY_HOSTNAME}; the upstream goes in the path`);
      }
      const path = parseGatewayPath(req.url ?? "");
      auditPath = `/${path.segments.join("/")}`.slice(0, AUDIT_PATH_CHARS);
      route = routes.get(path.segments[0] ?? "");
      if (!route) throw new GatewayRefusal("invalid_request", 404, `no gateway route /${path.segments[0] ?? ""}/`);
      const gatewayUrl = `http://${publicHost}:${listeningPort}`;
      outcome = await route.handle({ caller, method, path: { ...path, segments: path.segments.slice(1) }, req, res, gatewayUrl }, context);
    } catch (err) {
      const refusal = asRefusal(err);
      if (!(err instanceof GatewayRefusal)) log.warn({ sandbox_id: caller.sandboxId, err: messageOf(err) }, "gateway request failed");
      const body = `${JSON.stringify({ reason_code: refusal.reasonCode, message: refusal.message })}\n`;
      if (!res.headersSent) res.writeHead(refusal.status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) }).end(body);
      else res.destroy();
      return audit({ caller, route, method, auditPath, started, action: "deny", reasonCode: refusal.reasonCode, destinationHost: refusal.destinationHost, status: refusal.status, bytes: 0 });
    }
    audit({ caller, route, method, auditPath, started, action: "allow", ...outcome });
  }

  function audit(a: { caller: GatewayCaller; route: Route | undefined; method: string; auditPath: string; started: number } & Omit<GatewayAuditEvent, "sandboxId" | "service" | "method" | "path" | "durationMs" | "at"> & { service?: GatewayAuditEvent["service"] }): void {
    const event: GatewayAuditEvent = {
      sandboxId: a.caller.sandboxId,
      service: a.service ?? a.route?.service ?? "unknown",
      destinationHost: a.destinationHost,
      action: a.action,
      reasonCode: a.reasonCode,
      method: a.method.slice(0, 16),
      path: a.auditPath,
      status: a.status,
      bytes: a.bytes,
      durationMs: Math.round(performance.now() - a.started),
      at: new Date(),
    };
    log.info(
      { sandbox_id: event.sandboxId, service: event.service, destination_host: event.destinationHost, action: event.action, reason_code: event.reasonCode, status: event.status, bytes: event.bytes, duration_ms: event.durationMs },
      "gateway request",
    );
    opts.onAudit?.(event);
  }

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address();
  listeningPort = typeof address === "object" && address ? address.port : port;
  log.info({ port: listeningPort, host }, "gateway listening");

  return {
    port: listeningPort,
    url: `http://${publicHost}:${listeningPort}`,
    guestEnvironment: (caller) => guestEnvironment(`http://${publicHost}:${listeningPort}`, caller, settings),
    repositories: new RepositoryLookup(mirrorsFor(context)),
    cacheDirs: { mirrors: mirrorsFor(context).projectRoot, content: join(opts.stateDir, "content", "blobs") },
    diagnose() {
      const hosts = credentials.configuredHosts();
      const appProblem = credentials.githubAppProblem();
      return [
        { name: "gateway", ok: true, detail: `listening on ${host}:${listeningPort}; sandboxes use http://${publicHost}:${listeningPort}` },
        { name: "gateway credentials", ok: appProblem === undefined, detail: appProblem ?? (hosts.length ? `upstream credentials for ${hosts.join(", ")}` : "no upstream credentials configured") },
      ];
    },
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await upstream.close();
    },
  };
}

/** ":8170" → all addresses; "10.0.0.1:8170"; ":0" = ephemeral. */
export function parseGatewayListen(listen: string): { host: string; port: number } {
  const match = /^(\d{1,3}(?:\.\d{1,3}){3})?:(\d{1,5})$/.exec(listen);
  if (!match || Number(match[2]) > 65535) throw new Error(`--gateway-listen "${listen}": expected :PORT or IPV4:PORT`);
  return { host: match[1] ?? "0.0.0.0", port: Number(match[2]) };
}

function unmapped(address: string | undefined): string | undefined {
  return address?.startsWith("::ffff:") ? address.slice(7) : address;
}

function asRefusal(err: unknown): GatewayRefusal {
  if (err instanceof GatewayRefusal) return err;
  if (err instanceof IntegrityMismatch) return upstreamError(`refused: ${err.message}`, "");
  if (err instanceof ObjectTooLarge) return upstreamError(`refused: ${err.message}`, "");
  return upstreamError("the gateway could not complete the request", "");
}
