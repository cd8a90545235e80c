import type { Route } from "../route.ts";
import { fetchRoute } from "./fetch.ts";
import { npmRoute } from "./npm.ts";

/** Every route the gateway serves, by its first path segment. */
export function gatewayRoutes(): Route[] {
  return [fetchRoute, npmRoute];
}
