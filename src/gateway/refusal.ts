import type { GatewayReasonCode } from "./types.ts";

/** A request the gateway answers with an error: its audit reason code, the HTTP status the guest sees, and why. */
export class GatewayRefusal extends Error {
  readonly reasonCode: Exclude<GatewayReasonCode, "proxied" | "mirrored" | "cached" | "fallback">;
  readonly status: number;
  /** the upstream host the request was for, when known */
  readonly destinationHost: string;
  constructor(reasonCode: GatewayRefusal["reasonCode"], status: number, message: string, destinationHost = "") {
    super(message);
    this.name = "GatewayRefusal";
    this.reasonCode = reasonCode;
    this.status = status;
    this.destinationHost = destinationHost;
  }
}

export const invalidRequest = (message: string, host = ""): GatewayRefusal => new GatewayRefusal("invalid_request", 400, message, host);
export const methodNotAllowed = (method: string, host = ""): GatewayRefusal =>
  new GatewayRefusal("method_not_allowed", 405, `${method} is not allowed through the gateway`, host);
export const hostNotAllowed = (hostPort: string): GatewayRefusal =>
  new GatewayRefusal("host_not_allowed", 403, `${hostPort} is not allowed by the sandbox's policy in its current stage`, hostPort);
export const upstreamError = (message: string, host: string, status = 502): GatewayRefusal =>
  new GatewayRefusal("upstream_error", status, message, host);
