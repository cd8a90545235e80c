import type { GatewayContext } from "../route.ts";
import type { UpstreamRequest } from "../upstream-client.ts";

/**
 * A plain GET for a file or document at `url`, with the host's credential for it when one is configured. No
 * Accept-Encoding: the bytes stored are the document itself, as the digests that describe it do.
 */
export async function downloadRequest(ctx: GatewayContext, url: URL): Promise<UpstreamRequest> {
  const authorization = await ctx.credentials.authorizationFor(url, "http");
  return { headers: { "user-agent": "cleanroom-gateway", accept: "*/*" }, ...(authorization ? { authorization } : {}) };
}
