import { chmod, mkdir, rm } from "node:fs/promises";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createHttp2Server, type Http2ServerRequest, type Http2ServerResponse, type Http2Session } from "node:http2";
import { createServer as createNetServer, type Socket } from "node:net";
import { createServer as createTlsServer } from "node:tls";
import { dirname } from "node:path";
import { isLoopbackHost } from "../config/index.ts";
import { CleanroomError } from "../errors/index.ts";

export type ListenAddress = { kind: "unix"; path: string } | { kind: "tcp"; host: string; port: number; tls: boolean };

/** Key and certificate (PEM) of an https:// listener. */
export interface ListenerTls {
  key: string | Buffer;
  cert: string | Buffer;
}

/**
 * Parses `--listen`: `unix:///path`, a bare absolute path, `http://host:port` (loopback only: plain HTTP would carry
 * bearer tokens in the clear) or `https://host:port`.
 */
export function parseListenAddress(value: string): ListenAddress {
  if (value.startsWith("/")) return { kind: "unix", path: value };
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new CleanroomError("invalid_argument", `--listen ${value}: expected unix:///path, http://127.0.0.1:PORT or https://HOST:PORT`);
  }
  if (url.protocol === "unix:") {
    if (!url.pathname.startsWith("/")) throw new CleanroomError("invalid_argument", `--listen ${value}: the socket path must be absolute`);
    return { kind: "unix", path: url.pathname };
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new CleanroomError("invalid_argument", `--listen ${value}: unsupported scheme ${url.protocol} (use unix://, http:// on loopback, or https://)`);
  }
  const host = url.hostname.replace(/^\[|\]$/g, "");
  if (url.protocol === "http:" && !isLoopbackHost(host)) {
    throw new CleanroomError("auth_insecure_transport", `--listen ${value}: plain http is only served on loopback; a shared server listens on https:// (--tls-cert, --tls-key) with auth.required: true`);
  }
  return { kind: "tcp", host, port: Number(url.port || 7777), tls: url.protocol === "https:" };
}

/** How the HTTP/2 connection preface starts: a connection that opens with it speaks h2c (prior knowledge). */
const H2_PREFIX = Buffer.from("PRI ");

export interface ApiListener {
  url: string;
  /** stops accepting and ends every connection */
  close(): Promise<void>;
}

/**
 * Serves the API on `address`, answering /healthz itself. Each connection speaks HTTP/1.1 (the CLI's fast path) or,
 * when it opens with the HTTP/2 preface, h2c: Connect's bidirectional streams (DialSandboxPort) need HTTP/2.
 * Unix sockets are root-only (0600).
 */
export async function listenHttp(
  address: ListenAddress,
  handler: (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse) => void,
  tls?: ListenerTls,
): Promise<ApiListener> {
  if (address.kind === "tcp" && address.tls && !tls) throw new CleanroomError("invalid_argument", "an https:// listener needs --tls-cert and --tls-key");
  const serve = (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse) => {
    if (req.url === "/healthz") {
      res.setHeader("content-type", "text/plain");
      res.end("ok\n");
      return;
    }
    handler(req, res);
  };
  const http1 = createServer({ keepAliveTimeout: 30_000 }, serve);
  const http2 = createHttp2Server({}, serve);
  const sessions = new Set<Http2Session>();
  http2.on("session", (session: Http2Session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });
  // the two HTTP servers never listen themselves, so they do not track these sockets: closing ends them here
  const sockets = new Set<Socket>();
  const accept = (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    socket.once("error", () => socket.destroy());
    let head = Buffer.alloc(0);
    const route = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      // "P" may still be POST: four bytes tell "PRI " apart from every HTTP/1.1 method
      if (head.length < H2_PREFIX.length && H2_PREFIX.subarray(0, head.length).equals(head)) return;
      socket.off("data", route);
      socket.pause();
      socket.unshift(head);
      (head.subarray(0, H2_PREFIX.length).equals(H2_PREFIX) ? http2 : http1).emit("connection", socket);
      process.nextTick(() => socket.resume());
    };
    socket.on("data", route);
  };
  // over TLS the same sniffing runs on the decrypted bytes; ALPN offers h2 so HTTP/2 clients get it
  const front = address.kind === "tcp" && address.tls && tls
    ? createTlsServer({ key: tls.key, cert: tls.cert, ALPNProtocols: ["h2", "http/1.1"], minVersion: "TLSv1.2" }, accept)
    : createNetServer(accept);
  front.on("tlsClientError", (_err: Error, socket: Socket) => socket.destroy());
  const close = () =>
    new Promise<void>((resolve) => {
      front.close(() => resolve());
      for (const session of sessions) session.destroy();
      for (const socket of sockets) socket.destroy();
    });
  if (address.kind === "unix") {
    await mkdir(dirname(address.path), { recursive: true, mode: 0o755 });
    await rm(address.path, { force: true });
    await new Promise<void>((resolve, reject) => front.once("error", reject).listen(address.path, resolve));
    await chmod(address.path, 0o600);
    return { url: `unix://${address.path}`, close };
  }
  await new Promise<void>((resolve, reject) => front.once("error", reject).listen(address.port, address.host, resolve));
  const bound = front.address();
  const port = typeof bound === "object" && bound ? bound.port : address.port;
  return { url: `${address.tls ? "https" : "http"}://${address.host.includes(":") ? `[${address.host}]` : address.host}:${port}`, close };
}
