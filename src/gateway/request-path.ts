/**
 * Canonical gateway request paths. Everything here is guest input: a path either parses into clean segments
 * or is refused, so no route ever sees "..", an encoded separator trick, or a host it did not validate.
 */
import { invalidRequest } from "./refusal.ts";

const MAX_URL_LENGTH = 8192;
const MAX_SEGMENTS = 64;
const CONTROL = /[\u0000-\u001f\u007f]/;
const DNS_NAME = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;
const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

export interface GatewayPath {
  /** decoded path segments; the first names the route */
  segments: string[];
  /** the path ended in "/" */
  trailingSlash: boolean;
  /** the raw query string without "?" ("" when none) */
  query: string;
}

/** An upstream named in a path: lowercased host, port (default 443) and `host` or `host:port` as policy spells it. */
export interface UpstreamHost {
  host: string;
  port: number;
  /** "host" when the port is 443, else "host:port": the form used in URLs and audit events */
  authority: string;
}

/** Splits and decodes a request target; refuses dot segments, empty segments, backslashes and control bytes. */
export function parseGatewayPath(target: string): GatewayPath {
  if (target.length > MAX_URL_LENGTH) throw invalidRequest(`request target longer than ${MAX_URL_LENGTH} bytes`);
  if (!target.startsWith("/")) throw invalidRequest("request target must be an absolute path");
  const queryAt = target.indexOf("?");
  const rawPath = queryAt === -1 ? target : target.slice(0, queryAt);
  const query = queryAt === -1 ? "" : target.slice(queryAt + 1);
  if (query.includes("#") || CONTROL.test(query)) throw invalidRequest("malformed query string");
  const raw = rawPath.slice(1).split("/");
  const trailingSlash = raw.length > 1 && raw[raw.length - 1] === "";
  if (trailingSlash) raw.pop();
  if (raw.length > MAX_SEGMENTS) throw invalidRequest(`more than ${MAX_SEGMENTS} path segments`);
  const segments = raw.map(decodeSegment);
  return { segments, trailingSlash, query };
}

function decodeSegment(raw: string): string {
  if (raw === "") throw invalidRequest("empty path segment");
  let decoded: string;
  try {
    decoded = decodeURIComponent(raw);
  } catch {
    throw invalidRequest("malformed percent-encoding in path");
  }
  if (CONTROL.test(decoded) || decoded.includes("\\")) throw invalidRequest("control character or backslash in path");
  // an encoded "/" is kept only where it cannot climb: npm's "@scope%2fname" decodes to "@scope/name"
  for (const part of decoded.split("/")) {
    if (part === "" || part === "." || part === "..") throw invalidRequest("dot segment or encoded separator in path");
  }
  return decoded;
}

/** Validates the `host` or `host:port` segment of a route; IPv6 literals, userinfo and odd ports are refused. */
export function parseUpstreamHost(segment: string | undefined): UpstreamHost {
  if (!segment) throw invalidRequest("missing upstream host in path");
  const lower = segment.toLowerCase();
  const colon = lower.lastIndexOf(":");
  const host = colon === -1 ? lower : lower.slice(0, colon);
  const portText = colon === -1 ? "443" : lower.slice(colon + 1);
  if (!/^[1-9]\d{0,4}$/.test(portText) || Number(portText) > 65535) throw invalidRequest(`bad port in upstream "${segment}"`);
  if (!(DNS_NAME.test(host) || IPV4.test(host)) || /^\d+$/.test(host)) throw invalidRequest(`"${segment}" is not an upstream host`);
  const port = Number(portText);
  return { host, port, authority: port === 443 ? host : `${host}:${port}` };
}

/** Re-encodes decoded segments for an upstream URL. */
export function encodeSegments(segments: readonly string[]): string {
  return segments.map((s) => encodeURIComponent(s).replace(/%40/g, "@").replace(/%3A/gi, ":")).join("/");
}

/** The Host header must name the gateway (by name or the address the guest reached), never an upstream. */
export function isGatewayHostHeader(hostHeader: string | undefined, gatewayName: string, localAddress: string, port: number): boolean {
  if (!hostHeader) return false;
  const lower = hostHeader.toLowerCase();
  return [gatewayName, localAddress].some((name) => lower === name || lower === `${name}:${port}`);
}
