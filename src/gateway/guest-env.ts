/**
 * The environment that points a sandbox's ordinary tools at the gateway, for the upstreams its active stage
 * allows and nothing else. Pure, so what a guest sees is unit-tested. Under `--dangerously-allow-all` guests
 * talk to upstreams directly and nothing is rewritten.
 */
import type { GatewayCaller, GatewaySettings } from "./types.ts";

export const GATEWAY_HOSTNAME = "gateway.cleanroom.internal";
export const DEFAULT_NPM_REGISTRY = "registry.npmjs.org";
const DEFAULT_GO_PROXY = "proxy.golang.org";
const GO_SUMDB = "sum.golang.org";
const DEFAULT_RUBYGEMS = "rubygems.org";
const GO_DOWNLOADS = "dl.google.com";

/** `KEY=value` entries for an execution in a sandbox whose active stage is `caller`'s. */
export function guestEnvironment(gatewayUrl: string, caller: Pick<GatewayCaller, "rules" | "allowAll">, settings: GatewaySettings = {}): string[] {
  if (caller.allowAll) return [];
  const https = caller.rules.flatMap((rule) => rule.ports.map((port) => (port === 443 ? rule.host : `${rule.host}:${port}`)));
  const allows = (authority: string) => https.includes(authority);
  const env: string[] = [`CLEANROOM_GATEWAY_URL=${gatewayUrl}`];

  // git: https://<host>/… → <gateway>/git/<host>/… for every allowed host (any of them may serve Git)
  const git = https.map((authority) => [`url.${gatewayUrl}/git/${authority}/.insteadOf`, `https://${authority}/`] as const);
  env.push(`GIT_CONFIG_COUNT=${git.length}`);
  git.forEach(([key, value], i) => env.push(`GIT_CONFIG_KEY_${i}=${key}`, `GIT_CONFIG_VALUE_${i}=${value}`));

  const npm = (settings.npmRegistry ?? DEFAULT_NPM_REGISTRY).toLowerCase();
  // npm's own update check would fetch npm's whole packument on every run, for a notice nobody in a sandbox acts on
  if (allows(npm)) env.push(`npm_config_registry=${gatewayUrl}/npm/${npm}/`, "npm_config_update_notifier=false");
  if (allows(settings.goProxy ?? DEFAULT_GO_PROXY)) {
    env.push(`GOPROXY=${gatewayUrl}/goproxy/`);
    if (allows(GO_SUMDB)) env.push(`GOSUMDB=${GO_SUMDB} ${gatewayUrl}/goproxy/sumdb/${GO_SUMDB}`);
  }
  if (allows(settings.rubygemsHost ?? DEFAULT_RUBYGEMS)) env.push(`BUNDLE_MIRROR__HTTPS://RUBYGEMS__ORG/=${gatewayUrl}/rubygems/`);
  if (allows(GO_DOWNLOADS)) env.push(`MISE_GO_DOWNLOAD_MIRROR=${gatewayUrl}/fetch/${GO_DOWNLOADS}/go`);
  return env;
}
