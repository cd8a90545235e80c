// The daemon's own API listener: who can reach it, and whether they must authenticate (pure).
import { isLoopbackHost } from "../../config/index.ts";
import { fail, pass, warn, type HostCheck } from "./check.ts";

/** What the daemon serves its API on. */
export interface DaemonListener {
  /** `--listen`: unix:///path, a bare path, http://host:port or https://host:port */
  url: string;
  /** the runtime config requires authenticated callers */
  authRequired: boolean;
}

type Reach = { kind: "unix"; path: string } | { kind: "loopback" | "network"; host: string; tls: boolean };

function reachOf(url: string): Reach | undefined {
  if (url.startsWith("/")) return { kind: "unix", path: url };
  try {
    const u = new URL(url);
    if (u.protocol === "unix:") return { kind: "unix", path: u.pathname };
    if (u.protocol !== "http:" && u.protocol !== "https:") return undefined;
    const host = u.hostname.replace(/^\[|\]$/g, "");
    return { kind: isLoopbackHost(host) ? "loopback" : "network", host, tls: u.protocol === "https:" };
  } catch {
    return undefined;
  }
}

/**
 * `listener`: a unix socket or loopback is safe; another address is a warn unless it is https. `auth`: a listener
 * beyond loopback without required auth lets anyone who reaches it run code as the daemon: fail.
 */
export function listenerChecks(listener: DaemonListener): HostCheck[] {
  const reach = reachOf(listener.url);
  if (!reach) return [warn("listener", `${listener.url}: not an address doctor understands`, "listen on unix:///path, http://127.0.0.1:PORT or https://HOST:PORT")];
  if (reach.kind === "unix") {
    return [
      pass("listener", `unix socket ${reach.path} (root only, 0600)`),
      pass("auth", listener.authRequired ? "auth.required: true" : "not required: the socket's file permissions admit only root"),
    ];
  }
  const scheme = reach.tls ? "https" : "http";
  if (reach.kind === "loopback") {
    return [
      pass("listener", `${listener.url}: loopback only (${scheme})`),
      pass("auth", listener.authRequired ? "auth.required: true" : "not required: only this machine reaches a loopback listener"),
    ];
  }
  const listenerCheck = reach.tls
    ? pass("listener", `${listener.url}: reachable beyond this machine, over https`)
    : warn("listener", `${listener.url}: reachable beyond this machine over plain http (bearer tokens in the clear)`, "serve https:// with --tls-cert and --tls-key, or listen on a unix socket or loopback");
  const authCheck = listener.authRequired
    ? pass("auth", "auth.required: true")
    : fail("auth", `${listener.url} is reachable beyond this machine and auth is not required: anyone who reaches it can run sandboxes`, "set auth.required: true (with auth.oidc.issuers and auth.policy) in the runtime config, or listen on a unix socket or loopback");
  return [listenerCheck, authCheck];
}
