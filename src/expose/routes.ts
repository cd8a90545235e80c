// HTTPS routes: which host names an exposure serves and the guest port behind each. Pure.
import { CleanroomError } from "../errors/index.ts";
import { EXPOSURE_DOMAIN, expandExposeHosts, exposureHostProblem, isExposureLabel } from "../policy/index.ts";

export interface HttpsRoute {
  /** a host under cleanroom.localhost; a leading `*` label (or several) stands for exactly one label each */
  host: string;
  port: number;
}

/** expose.https of a sandbox's policy, as the daemon reports it */
export interface ExposeHttpsPolicy {
  base?: string;
  routes: { port: number; hosts: string[] }[];
}

/**
 * `--expose-https [name:]port`. The name is one label (`web` → web.cleanroom.localhost) or a wildcard over a dotted
 * suffix (`*.web` → any one label before web.cleanroom.localhost); without one, the sandbox id names the route.
 * Dotted exact names (`api.web`) are refused as Cleanroom refuses them: `*.web` covers them.
 */
export function parseHttpsExposure(spec: string, sandboxId: string): HttpsRoute {
  const match = /^(?:(.+):)?(\d{1,5})$/.exec(spec.trim());
  const port = Number(match?.[2]);
  if (!match || !(port >= 1 && port <= 65535)) {
    throw new CleanroomError("invalid_argument", `--expose-https ${JSON.stringify(spec)}: expected [name:]port with a port 1..65535, e.g. web:3000 or 3000`);
  }
  const name = match[1] ?? sandboxId;
  const labels = name.startsWith("*.") ? name.slice(2).split(".") : [name];
  if (!labels.every(isExposureLabel)) {
    throw new CleanroomError("invalid_argument", `--expose-https ${JSON.stringify(spec)}: the name is one lowercase label of [a-z0-9-] (at most 63 characters), or *.label… for the hosts one level below it`);
  }
  return { host: `${name}.${EXPOSURE_DOMAIN}`, port };
}

/** `Sandbox.expose_https` as the API's JSON carries it (every field optional), in the policy's own shape. */
export function exposeHttpsPolicyOf(json: { base?: string; routes?: { port?: number; hosts?: string[] }[] } | undefined): ExposeHttpsPolicy | undefined {
  return json && { base: json.base ?? "", routes: (json.routes ?? []).map((r) => ({ port: r.port ?? 0, hosts: r.hosts ?? [] })) };
}

/** The routes a policy declares for one sandbox (a bare `--expose-https`). */
export function routesFromPolicy(https: ExposeHttpsPolicy | undefined, sandboxId: string): HttpsRoute[] {
  const routes = https ? expandExposeHosts(https, sandboxId) : [];
  if (!routes.length) {
    throw new CleanroomError("invalid_argument", "--expose-https without a route needs expose.https routes in the sandbox's cleanroom.yaml; or name one, e.g. --expose-https web:3000");
  }
  for (const route of routes) {
    const problem = exposureHostProblem(route.host);
    // the daemon checked the policy; a client still refuses to serve a name outside cleanroom.localhost
    if (problem) throw new CleanroomError("policy_invalid", `expose.https host "${route.host}" ${problem}`);
  }
  return routes;
}

/** One host, one port: the same host declared for two ports is ambiguous and refused. */
export function checkRoutes(routes: HttpsRoute[]): HttpsRoute[] {
  const byHost = new Map<string, number>();
  const unique: HttpsRoute[] = [];
  for (const route of routes) {
    const host = route.host.toLowerCase();
    const earlier = byHost.get(host);
    if (earlier !== undefined && earlier !== route.port) throw new CleanroomError("invalid_argument", `${host} is routed to both port ${earlier} and port ${route.port}`);
    if (earlier === undefined) unique.push({ host, port: route.port });
    byHost.set(host, route.port);
  }
  return unique;
}

/**
 * The route for a request's host (its port and case ignored): an exact route first, then the wildcard route with
 * the fewest wildcards whose labels all match; `*` matches exactly one label, never the base itself or deeper names.
 */
export function matchRoute(routes: readonly HttpsRoute[], requestHost: string): HttpsRoute | undefined {
  const host = hostWithoutPort(requestHost).toLowerCase().replace(/\.$/, "");
  const exact = routes.find((route) => route.host === host);
  if (exact) return exact;
  const labels = host.split(".");
  let best: { route: HttpsRoute; wildcards: number } | undefined;
  for (const route of routes) {
    const pattern = route.host.split(".");
    if (pattern.length !== labels.length) continue;
    if (!pattern.every((label, i) => label === "*" || label === labels[i])) continue;
    const wildcards = pattern.filter((label) => label === "*").length;
    if (!best || wildcards < best.wildcards) best = { route, wildcards };
  }
  return best?.route;
}

/** `name:8143` → `name`; `[::1]:8143` → `::1`. */
export function hostWithoutPort(hostHeader: string): string {
  if (hostHeader.startsWith("[")) return hostHeader.slice(1, hostHeader.indexOf("]") >>> 0);
  const colon = hostHeader.lastIndexOf(":");
  return colon < 0 ? hostHeader : hostHeader.slice(0, colon);
}

/** An address a browser can open for a route: wildcards shown as-is, so the user sees what they may put there. */
export function routeUrl(route: HttpsRoute, listenPort: number): string {
  return `https://${route.host}${listenPort === 443 ? "" : `:${listenPort}`}/`;
}
