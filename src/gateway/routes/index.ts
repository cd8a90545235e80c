import type { Route } from "../route.ts";
import { fetchRoute } from "./fetch.ts";
import { gitRoute } from "./git.ts";
import { dockerHubRoute, registryRoute } from "./registry.ts";
import { npmRoute } from "./npm.ts";
import { goproxyRoute } from "./goproxy.ts";
import { rubygemsRoute } from "./rubygems.ts";

/** Every route the gateway serves, by its first path segment. */
export function gatewayRoutes(): Route[] {
  return [fetchRoute, gitRoute, npmRoute, registryRoute, dockerHubRoute, goproxyRoute, rubygemsRoute];
}
