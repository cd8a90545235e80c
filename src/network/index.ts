/**
 * network/: each sandbox's network, and the promise that it reaches only what its policy allows.
 *
 *   const net = await createNetworkManager({ stateDir: "/var/lib/cleanroom/network", logger });   // root
 *   await net.reconcile(liveSandboxIds);              // start-up: remove netns/veth/rules/leases nobody owns
 *   for (const sb of running) await net.restore({ ...sb.networkSpec, initialStage: sb.stage }); // DNS back, connections kept
 *
 *   const sn = await net.setUp({ sandboxId, allow: [{ host: "api.test", ports: [443] }] });
 *   //   or: stages: { repository: [...], dependencies: [...], execution: [...] }, initialStage: "repository"
 *   //   or: allowAll: true  (--dangerously-allow-all)
 *   backend.launch({ ...spec, networkNamespacePath: sn.netnsPath });  // write sn.resolvConf to the sandbox's /etc/resolv.conf
 *   await net.activateStage(sandboxId, "execution");  // atomic; connections the old stage allowed are cut
 *   net.events.on("event", (e) => …);                  // or: for await (const [e] of on(net.events, "event"))
 *   //   { type: "connection_blocked", sandboxId, destination, port, protocol, reason: "host_not_allowed", target, source, at }
 *   //   { type: "dns_query_denied", sandboxId, name, queryType, reason: "host_not_allowed", at }
 *   await net.tearDown(sandboxId);                     // idempotent, also after a kill -9
 *
 * The gateway (issue 4) listens on sn.hostAddress:gatewayPort; the connection's source address (sn.sandboxAddress,
 * anti-spoofed) says which sandbox is calling.
 */
export { createNetworkManager, type NetworkManager } from "./network-manager.ts";
export { hostResolver, type HostResolverOptions } from "./resolver.ts";
export { renderResolvConf } from "./resolv-conf.ts";
export type { NetworkEvents } from "./network-events.ts";
export type {
  AllowRule,
  ConnectionBlockedEvent,
  DnsQueryDeniedEvent,
  HostResolver,
  NetworkEvent,
  NetworkManagerOptions,
  SandboxNetwork,
  SandboxNetworkSpec,
} from "./types.ts";
