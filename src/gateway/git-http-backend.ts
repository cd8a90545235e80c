/**
 * Serves a mirror with `git http-backend` run as a CGI: the guest's request body goes in (bounded), the CGI
 * header block comes back (bounded, only known headers kept) and the body is streamed to the guest. The child
 * is killed when the guest goes away or its deadline passes; a child that fails mid-body cuts the response,
 * so the guest's git sees a broken transfer, never a short one that looks complete.
 */
import { spawn } from "node:child_process";
import type { ServerResponse } from "node:http";
import { Transform, type Readable, type Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { Logger } from "../observability/index.ts";
import { gitConfigEnv } from "./git-mirror.ts";
import { type GatewayRefusal, invalidRequest, upstreamError } from "./refusal.ts";

const BACKEND_TIMEOUT_MS = 20 * 60_000;
const MAX_HEADER_BYTES = 16 * 1024;
const STDERR_BYTES = 16 * 1024;
/** CGI response headers passed on to the guest; everything else http-backend says stays here */
export const FORWARDED_HEADERS = new Set(["content-type", "cache-control", "expires", "pragma"]);

/** What the route validated from the guest's request headers. */
export interface GitRequestHeaders {
  contentType?: string;
  contentLength?: number;
  contentEncoding?: "gzip";
  /** the Git-Protocol header ("version=2"), when it was well-formed */
  gitProtocol?: string;
}

export interface BackendRequest {
  projectRoot: string;
  /** "/<mirror>.git/info/refs" or "/<mirror>.git/git-upload-pack" */
  pathInfo: string;
  method: "GET" | "POST";
  query: string;
  headers: GitRequestHeaders;
  remoteAddress: string;
  body?: Readable;
  maxBodyBytes: number;
  /** the upstream authority, for refusals */
  destinationHost: string;
  /** the isolated git environment (HOME, no host config) */
  env: NodeJS.ProcessEnv;
  logger: Logger;
}

/** Runs http-backend for one request and streams its answer to `res`; returns status and body bytes sent. */
export async function serveHttpBackend(r: BackendRequest, res: ServerResponse): Promise<{ status: number; bytes: number }> {
  const child = spawn("git", ["http-backend"], { env: cgiEnvironment(r), stdio: [r.body ? "pipe" : "ignore", "pipe", "pipe"] });
  const exited = new Promise<number | null>((resolve) => {
    child.once("error", () => resolve(null));
    child.once("close", (code) => resolve(code));
  });
  const kill = () => void child.kill("SIGKILL");
  const timer = setTimeout(kill, BACKEND_TIMEOUT_MS);
  let guestGone = false;
  res.once("close", () => {
    guestGone = !res.writableFinished;
    kill();
  });
  let stderr = "";
  child.stderr!.on("data", (c: Buffer) => (stderr = (stderr + c.toString("utf8")).slice(-STDERR_BYTES)));
  const bodyRefusal = r.body && child.stdin ? feedRequestBody(r, r.body, child.stdin, kill) : () => undefined;
  try {
    const out = child.stdout![Symbol.asyncIterator]() as AsyncIterator<Buffer>;
    const head = await readHeaderBlock(out, kill, r.destinationHost);
    if (!head) {
      const code = await exited;
      const refusal = bodyRefusal();
      if (refusal) throw refusal;
      r.logger.warn({ code, stderr }, "git http-backend gave no response");
      throw upstreamError("the gateway could not serve this repository from its mirror", r.destinationHost);
    }
    const { status, headers } = parseCgiHeaders(head.text);
    res.writeHead(status, headers);
    let bytes = 0;
    await streamBody(head.rest, out, res, (n) => (bytes += n)).catch(kill);
    const code = await exited;
    const refusal = bodyRefusal(); // http-backend sends its headers before it reads the body, so this can come late
    if (refusal) throw refusal;
    if (code === 0 && !guestGone) res.end();
    else if (!guestGone) {
      r.logger.warn({ code, stderr }, "git http-backend failed mid-response");
      throw upstreamError("the mirror's answer broke off", r.destinationHost);
    }
    return { status, bytes };
  } finally {
    clearTimeout(timer);
    kill();
  }
}

/** Pipes the guest's body into the child (bounded); returns what to refuse the request with, once known. */
function feedRequestBody(r: BackendRequest, body: Readable, stdin: Writable, kill: () => void): () => GatewayRefusal | undefined {
  let refusal: GatewayRefusal | undefined;
  stdin.on("error", () => undefined); // http-backend may exit without reading everything
  pipeline(body, byteLimit(r.maxBodyBytes), stdin).catch((err: unknown) => {
    if (err instanceof BodyTooLarge) refusal = invalidRequest(err.message, r.destinationHost);
    if (!body.readableEnded) kill();
  });
  return () => refusal;
}

/** Writes what followed the headers and the rest of the child's stdout to `res`, leaving it open for the caller. */
async function streamBody(first: Buffer, out: AsyncIterator<Buffer>, res: ServerResponse, onBytes: (count: number) => void): Promise<void> {
  const counted = async function* () {
    if (first.length) {
      onBytes(first.length);
      yield first;
    }
    for await (const chunk of { [Symbol.asyncIterator]: () => out }) {
      onBytes(chunk.length);
      yield chunk;
    }
  };
  await pipeline(counted, res, { end: false });
}

function cgiEnvironment(r: BackendRequest): NodeJS.ProcessEnv {
  const h = r.headers;
  return {
    ...r.env,
    // belt and braces: the route never forwards a push or a dumb-HTTP file request, and http-backend would refuse them too
    ...gitConfigEnv([["http.receivepack", "false"], ["http.getanyfile", "false"], ["http.uploadpack", "true"]]),
    GIT_PROJECT_ROOT: r.projectRoot,
    GIT_HTTP_EXPORT_ALL: "1",
    PATH_INFO: r.pathInfo,
    QUERY_STRING: r.query,
    REQUEST_METHOD: r.method,
    REMOTE_ADDR: r.remoteAddress,
    ...(h.contentType ? { CONTENT_TYPE: h.contentType } : {}),
    ...(h.contentLength !== undefined ? { CONTENT_LENGTH: String(h.contentLength) } : {}),
    ...(h.contentEncoding ? { HTTP_CONTENT_ENCODING: h.contentEncoding } : {}),
    ...(h.gitProtocol ? { GIT_PROTOCOL: h.gitProtocol } : {}),
  };
}

/** Reads stdout up to the blank line ending the CGI headers; undefined when the child ended first. */
async function readHeaderBlock(out: AsyncIterator<Buffer>, kill: () => void, host: string): Promise<{ text: string; rest: Buffer } | undefined> {
  let buffered = Buffer.alloc(0);
  for (;;) {
    const next = await out.next();
    if (next.done) return undefined;
    buffered = Buffer.concat([buffered, next.value]);
    const crlf = buffered.indexOf("\r\n\r\n");
    const lf = buffered.indexOf("\n\n");
    const end = crlf !== -1 && (lf === -1 || crlf < lf) ? { at: crlf, length: 4 } : lf !== -1 ? { at: lf, length: 2 } : undefined;
    if (end && end.at <= MAX_HEADER_BYTES) return { text: buffered.subarray(0, end.at).toString("latin1"), rest: buffered.subarray(end.at + end.length) };
    if (buffered.length > MAX_HEADER_BYTES) {
      kill();
      throw upstreamError("git http-backend sent an oversized header block", host);
    }
  }
}

/** `Status: 404 Not Found` and `Name: value` lines; unknown or malformed headers are dropped. */
export function parseCgiHeaders(text: string): { status: number; headers: Record<string, string> } {
  let status = 200;
  const headers: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === "status") {
      const code = Number(/^(\d{3})\b/.exec(value)?.[1]);
      if (code >= 200 && code <= 599) status = code;
    } else if (FORWARDED_HEADERS.has(name) && /^[\x20-\x7e]{0,1024}$/.test(value)) {
      headers[name] = value;
    }
  }
  return { status, headers };
}

export class BodyTooLarge extends Error {
  constructor(limitBytes: number) {
    super(`request body larger than ${limitBytes} bytes`);
    this.name = "BodyTooLarge";
  }
}

/** Passes bytes through (telling `onBytes` how many) until more than `limitBytes` went by, then fails with BodyTooLarge. */
export function byteLimit(limitBytes: number, onBytes?: (count: number) => void): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      seen += chunk.length;
      if (seen > limitBytes) return done(new BodyTooLarge(limitBytes));
      onBytes?.(chunk.length);
      done(null, chunk);
    },
  });
}
