/**
 * gateway/: the host-side HTTP server through which sandboxes fetch code and packages. It knows a caller only
 * by its anti-spoofed source address, checks every upstream host:port against that sandbox's active stage,
 * adds credentials only on the upstream leg, caches what it fetched and audits every request.
 *
 *   const gw = await startGateway({ listen: ":8170", stateDir, callers: (remote, local) => …, resolver, logger, onAudit });
 *   network.setUp(...) with gatewayPort: gw.port;  exec env += gw.guestEnvironment(caller)
 */
export { startGateway, parseGatewayListen, type Gateway } from "./server.ts";
export { guestEnvironment, GATEWAY_HOSTNAME } from "./guest-env.ts";
export { parseRepositoryUrl, type RepositoryLookup, type ResolvedCommit } from "./repository-lookup.ts";
export type {
  CallerLookup,
  GatewayAuditEvent,
  GatewayCaller,
  GatewayOptions,
  GatewayReasonCode,
  GatewayService,
  GatewaySettings,
  GithubAppSettings,
  UpstreamResolver,
} from "./types.ts";
