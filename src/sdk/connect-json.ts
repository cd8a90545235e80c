// A Connect-protocol client speaking JSON over HTTP/1.1 with nothing but node:http. Streaming calls may instead
// carry binary (protobuf) messages their caller encodes itself: the file transfers do (file-messages.ts).
// Why not @connectrpc/connect-node here: loading protobuf-es descriptors and node:http2 costs the CLI
// ~130 ms per start, more than the daemon needs to create a sandbox (DESIGN: speed budget of the CLI).
// Message types come from the generated JSON types (type-only imports, nothing loaded at run time).
import { createRequire } from "node:module";
import type { IncomingMessage } from "node:http";
import { isLoopbackHost } from "../config/index.ts";
import { CleanroomError, REASON_CODE_HEADER, type ReasonCode } from "../errors/index.ts";

// `import … from "node:http"` builds the module's ESM facade, which evaluates a lazy getter that loads
// undici (~25 ms); a CommonJS require of the same module does not.
const load = createRequire(import.meta.url);
const http = load("node:http") as typeof import("node:http");

/** The JSON shape protobuf-es generated for a message schema (`json_types=true`). */
export type JsonOf<Schema> = Schema extends { readonly $codegenv2: { b: { jsonType: infer J } } } ? J : never;

type MethodsOf<Service> = Service extends { method: infer M } ? M : never;

/** A typed client for one service: unary methods return promises, server-streaming ones async iterables. */
export type JsonClient<Service> = {
  [K in keyof MethodsOf<Service>]: MethodsOf<Service>[K] extends { methodKind: "unary"; input: infer I; output: infer O }
    ? (req: JsonOf<I>, opts?: CallOptions) => Promise<JsonOf<O>>
    : MethodsOf<Service>[K] extends { methodKind: "server_streaming"; input: infer I; output: infer O }
      ? (req: JsonOf<I>, opts?: CallOptions) => AsyncGenerator<JsonOf<O>>
      : never;
};

export type StreamingMethodName<Service> = {
  [K in keyof MethodsOf<Service>]: MethodsOf<Service>[K] extends { methodKind: "server_streaming" } ? K : never;
}[keyof MethodsOf<Service>];

export interface CallOptions {
  signal?: AbortSignal;
}

/** How a streaming call's messages travel: its content type, and how one reply message's payload is read. */
export interface StreamFormat<Reply> {
  contentType: "application/connect+json" | "application/connect+proto";
  decode(payload: Buffer): Reply;
}

const JSON_FORMAT: StreamFormat<unknown> = { contentType: "application/connect+json", decode: (payload) => JSON.parse(payload.toString("utf8")) };

/** The binary Connect protocol (protobuf messages), for calls with a codec of their own (file-messages.ts). */
export function protoFormat<Reply>(decode: (payload: Buffer) => Reply): StreamFormat<Reply> {
  return { contentType: "application/connect+proto", decode };
}

export interface Endpoint {
  /** set for unix sockets */
  socketPath?: string;
  /** http(s)://host:port (for unix sockets a nominal one) */
  baseUrl: string;
  /** shown in errors */
  display: string;
  /** https: the CA certificates (PEM) that vouch for the daemon (default: the system's) */
  ca?: Buffer;
  /** sent as `Authorization: Bearer …` */
  token?: string;
  /** sent on every call, e.g. `traceparent` */
  headers?: Record<string, string>;
}

/** a single stream message larger than this is a broken or hostile server */
const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;
const END_STREAM_FLAG = 0x02;

/**
 * Parses `unix:///path`, `/path` or `http(s)://host:port`. A bearer token is never sent over plain http beyond
 * loopback, where anyone on the path could read and replay it: that is refused (auth_insecure_transport).
 */
export function parseEndpoint(host: string, opts: { ca?: Buffer; token?: string; headers?: Record<string, string> } = {}): Endpoint {
  const secrets = { ...(opts.ca ? { ca: opts.ca } : {}), ...(opts.token ? { token: opts.token } : {}), ...(opts.headers ? { headers: opts.headers } : {}) };
  if (host.startsWith("unix://") || host.startsWith("/")) {
    const socketPath = host.startsWith("/") ? host : host.slice("unix://".length);
    if (!socketPath.startsWith("/")) throw new CleanroomError("invalid_argument", `--host ${host}: the socket path must be absolute`);
    // an IPv4 literal as the nominal host: for "localhost" node:http runs (and compiles) its IPv6 regex, ~14 ms
    return { socketPath, baseUrl: "http://127.0.0.1", display: host, ...secrets };
  }
  if (host.startsWith("http://")) {
    const baseUrl = host.replace(/\/+$/, "");
    if (opts.token && !isLoopbackHost(new URL(baseUrl).hostname)) {
      throw new CleanroomError("auth_insecure_transport", `--host ${host}: a bearer token is never sent over plain http beyond loopback; use https://`);
    }
    return { baseUrl, display: host, ...secrets };
  }
  if (host.startsWith("https://")) return { baseUrl: host.replace(/\/+$/, ""), display: host, ...secrets };
  throw new CleanroomError("invalid_argument", `--host ${host}: expected unix:///path, http://127.0.0.1:port or https://host:port`);
}

/** Sends Connect unary and server-streaming calls; one keep-alive connection pool per transport. */
export class JsonTransport {
  readonly endpoint: Endpoint;
  readonly #agent: import("node:http").Agent;
  readonly #request: typeof import("node:http").request;

  constructor(endpoint: Endpoint) {
    this.endpoint = endpoint;
    if (endpoint.baseUrl.startsWith("https:")) {
      const https = load("node:https") as typeof import("node:https");
      this.#agent = new https.Agent({ keepAlive: true, maxSockets: 8, ...(endpoint.ca ? { ca: endpoint.ca } : {}) });
      this.#request = https.request as typeof import("node:http").request;
    } else {
      this.#agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
      this.#request = http.request;
    }
  }

  /** A typed client for `typeName` (e.g. "cleanroom.v1.SandboxService"). */
  client<Service>(typeName: string, streaming: readonly StreamingMethodName<Service>[]): JsonClient<Service> {
    const streamingNames = new Set<string>(streaming as readonly string[]);
    return new Proxy({} as JsonClient<Service>, {
      get: (_target, name) => {
        if (typeof name !== "string") return undefined;
        const path = `/${typeName}/${name[0]!.toUpperCase()}${name.slice(1)}`;
        return streamingNames.has(name)
          ? (req: unknown, opts?: CallOptions) => this.serverStream(path, req, opts)
          : (req: unknown, opts?: CallOptions) => this.unary(path, req, opts);
      },
    });
  }

  async unary(path: string, message: unknown, opts: CallOptions = {}): Promise<unknown> {
    const body = Buffer.from(JSON.stringify(message));
    const res = await this.#send(path, body, "application/json", opts);
    const text = (await readAll(res, MAX_MESSAGE_BYTES)).toString("utf8");
    if (res.statusCode === 200) return text ? JSON.parse(text) : {};
    const reason = res.headers[REASON_CODE_HEADER];
    throw errorFrom(parseJson(text), typeof reason === "string" ? reason : undefined, res.statusCode);
  }

  serverStream(path: string, message: unknown, opts: CallOptions = {}): AsyncGenerator<unknown> {
    return this.serverStreamEncoded(path, Buffer.from(JSON.stringify(message)), JSON_FORMAT, opts);
  }

  /** A server-streaming call whose request is already encoded in `format`. */
  async *serverStreamEncoded<Reply>(path: string, request: Buffer, format: StreamFormat<Reply>, opts: CallOptions = {}): AsyncGenerator<Reply> {
    yield* this.#streamReplies(await this.#send(path, envelope(request), format.contentType, opts), format, opts);
  }

  /** The enveloped messages of a streaming response, up to its end-of-stream message (errors thrown). */
  async *#streamReplies<Reply>(res: IncomingMessage, format: StreamFormat<Reply>, opts: CallOptions): AsyncGenerator<Reply> {
    if (res.statusCode !== 200) {
      const text = (await readAll(res, MAX_MESSAGE_BYTES)).toString("utf8");
      throw errorFrom(parseJson(text), undefined, res.statusCode);
    }
    // chunks are kept in a list and joined once a whole message is in: joining on every socket read would copy
    // a 1 MiB message dozens of times
    const queue: Buffer[] = [];
    let queued = 0;
    let ended = false;
    try {
      for await (const chunk of res as AsyncIterable<Buffer>) {
        queue.push(chunk);
        queued += chunk.byteLength;
        for (;;) {
          if (queued < 5) break;
          if (queue[0]!.byteLength < 5) queue.splice(0, queue.length, Buffer.concat(queue, queued));
          const head = queue[0]!;
          const flags = head.readUInt8(0);
          const length = head.readUInt32BE(1);
          if (length > MAX_MESSAGE_BYTES) throw new CleanroomError("internal", `the daemon sent a ${length}-byte message; refusing it`);
          if (queued < 5 + length) break;
          const joined = queue.length === 1 ? queue[0]! : Buffer.concat(queue, queued);
          const payload = joined.subarray(5, 5 + length);
          const rest = joined.subarray(5 + length);
          queue.length = 0;
          queued = rest.byteLength;
          if (queued) queue.push(rest);
          if (flags & END_STREAM_FLAG) {
            ended = true; // the end-of-stream message is JSON in either format
            const end = parseJson(payload.toString("utf8")) as { error?: unknown; metadata?: Record<string, string[]> };
            if (end.error) throw errorFrom(end.error, end.metadata?.[REASON_CODE_HEADER]?.[0], 200);
            return;
          }
          yield format.decode(payload);
        }
      }
    } catch (err) {
      if (opts.signal?.aborted) throw opts.signal.reason;
      throw err;
    } finally {
      res.destroy();
    }
    if (!ended) throw new CleanroomError("agent_unavailable", `the daemon at ${this.endpoint.display} closed the stream before it ended`);
  }

  /** A client-streaming call: `messages` are sent as they come (with backpressure); resolves with the one reply. */
  clientStream(path: string, messages: AsyncIterable<unknown>, opts: CallOptions = {}): Promise<unknown> {
    const encoded = (async function* () {
      for await (const message of messages) yield Buffer.from(JSON.stringify(message));
    })();
    return this.clientStreamEncoded(path, encoded, JSON_FORMAT, opts);
  }

  /** A client-streaming call whose messages are already encoded in `format`. */
  async clientStreamEncoded<Reply>(path: string, messages: AsyncIterable<Buffer>, format: StreamFormat<Reply>, opts: CallOptions = {}): Promise<Reply> {
    // the envelope prefix goes out as its own write: a megabyte message is sent as it is, never copied
    const body = (async function* () {
      for await (const message of messages) yield* [envelopePrefix(message.byteLength), message];
    })();
    const replies = this.#streamReplies(await this.#send(path, body, format.contentType, opts), format, opts);
    let reply: { value: Reply } | undefined;
    for await (const message of replies) reply ??= { value: message };
    if (reply === undefined) throw new CleanroomError("internal", `the daemon at ${this.endpoint.display} sent no reply`);
    return reply.value;
  }

  close(): void {
    this.#agent.destroy();
  }

  #send(path: string, body: Buffer | AsyncIterable<Buffer>, contentType: string, opts: CallOptions): Promise<IncomingMessage> {
    const url = new URL(path, this.endpoint.baseUrl);
    const streamed = !Buffer.isBuffer(body);
    return new Promise((resolve, reject) => {
      const req = this.#request(
        url,
        {
          method: "POST",
          agent: this.#agent,
          ...(this.endpoint.socketPath ? { socketPath: this.endpoint.socketPath } : {}),
          headers: {
            ...this.endpoint.headers,
            "content-type": contentType,
            "connect-protocol-version": "1",
            ...(streamed ? {} : { "content-length": body.byteLength }),
            ...(this.endpoint.token ? { authorization: `Bearer ${this.endpoint.token}` } : {}),
          },
          ...(opts.signal ? { signal: opts.signal } : {}),
        },
        resolve,
      );
      req.on("error", (err: NodeJS.ErrnoException) => {
        if (opts.signal?.aborted) return reject(opts.signal.reason);
        if (err.code === "ENOENT" || err.code === "ECONNREFUSED") {
          return reject(new CleanroomError("backend_unavailable", `cannot reach the cleanroom daemon at ${this.endpoint.display}; start it with \`cleanroom serve\` (as root) or point --host / CLEANROOM_HOST at it`, undefined, { cause: err }));
        }
        reject(new CleanroomError("internal", `request to the daemon at ${this.endpoint.display} failed: ${err.message}`, undefined, { cause: err }));
      });
      if (!streamed) return void req.end(body);
      void (async () => {
        try {
          for await (const chunk of body) if (!req.write(chunk)) await new Promise((r) => req.once("drain", r));
          req.end();
        } catch (err) {
          req.destroy(err as Error);
        }
      })();
    });
  }
}

/** One Connect stream message: flags byte, big-endian length, payload. */
function envelope(payload: Buffer): Buffer {
  return Buffer.concat([envelopePrefix(payload.byteLength), payload]);
}

/** The flags byte (0) and big-endian length that come before a stream message's payload. */
function envelopePrefix(payloadBytes: number): Buffer {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(payloadBytes, 1);
  return prefix;
}

async function readAll(res: IncomingMessage, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res as AsyncIterable<Buffer>) {
    size += chunk.byteLength;
    if (size > limit) throw new CleanroomError("internal", `the daemon's response exceeds ${limit} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return { message: text.slice(0, 500) };
  }
}

/** A Connect error body (`{code, message}`) as a CleanroomError carrying the daemon's reason code. */
function errorFrom(body: unknown, reason: string | undefined, status: number | undefined): CleanroomError {
  const error = (body ?? {}) as { code?: string; message?: string };
  const message = error.message || `the daemon answered HTTP ${status}${error.code ? ` (${error.code})` : ""}`;
  return new CleanroomError((reason as ReasonCode | undefined) ?? "internal", message, { connect_code: error.code ?? "" });
}
