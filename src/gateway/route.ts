import type { IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "../observability/index.ts";
import type { ContentStore } from "./content-store.ts";
import type { CredentialChain } from "./credentials.ts";
import type { GatewayPath } from "./request-path.ts";
import type { UpstreamClient } from "./upstream-client.ts";
import type { GatewayCaller, GatewayReasonCode, GatewayService, GatewaySettings } from "./types.ts";

/** One guest request, already tied to its sandbox and with a canonical path. */
export interface RouteRequest {
  caller: GatewayCaller;
  method: string;
  /** segments after the route's own (e.g. for /npm/registry.npmjs.org/lodash: ["registry.npmjs.org", "lodash"]) */
  path: GatewayPath;
  req: IncomingMessage;
  res: ServerResponse;
  /** how guests reach the gateway, e.g. "http://gateway.cleanroom.internal:8170" (for rewritten URLs) */
  gatewayUrl: string;
}

/** What the gateway shares with every route. */
export interface GatewayContext {
  upstream: UpstreamClient;
  store: ContentStore;
  credentials: CredentialChain;
  settings: GatewaySettings;
  /** the gateway's state dir: routes keep their own data under `<stateDir>/<route>` */
  stateDir: string;
  logger: Logger;
}

/** How an answered request is audited. Refusals are thrown as GatewayRefusal instead. */
export interface RouteOutcome {
  destinationHost: string;
  reasonCode: Extract<GatewayReasonCode, "proxied" | "mirrored" | "cached" | "fallback">;
  status: number;
  /** body bytes sent to the sandbox */
  bytes: number;
  /** set when one route serves several services (goproxy also serves sumdb) */
  service?: GatewayService;
}

export interface Route {
  /** the first path segment: "git", "npm", … */
  prefix: string;
  service: GatewayService;
  handle(request: RouteRequest, context: GatewayContext): Promise<RouteOutcome>;
}
