import { chmod, mkdir, rm } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { dirname } from "node:path";
import { CleanroomError } from "../errors/index.ts";

export type ListenAddress = { kind: "unix"; path: string } | { kind: "tcp"; host: string; port: number };

/** Parses `--listen`: `unix:///path`, a bare absolute path, or `http://host:port` (loopback only until auth exists). */
export function parseListenAddress(value: string): ListenAddress {
  if (value.startsWith("/")) return { kind: "unix", path: value };
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new CleanroomError("invalid_argument", `--listen ${value}: expected unix:///path or http://127.0.0.1:PORT`);
  }
  if (url.protocol === "unix:") {
    if (!url.pathname.startsWith("/")) throw new CleanroomError("invalid_argument", `--listen ${value}: the socket path must be absolute`);
    return { kind: "unix", path: url.pathname };
  }
  if (url.protocol === "http:") {
    const host = url.hostname.replace(/^\[|\]$/g, "");
    if (host !== "127.0.0.1" && host !== "localhost" && host !== "::1") {
      throw new CleanroomError("invalid_argument", `--listen ${value}: plain http is only served on loopback; a shared server needs https and auth`);
    }
    return { kind: "tcp", host, port: Number(url.port || 7777) };
  }
  throw new CleanroomError("invalid_argument", `--listen ${value}: unsupported scheme ${url.protocol} (use unix:// or http://)`);
}

/** Starts an HTTP/1.1 server for the API on `address`, answering /healthz itself. Unix sockets are root-only (0600). */
export async function listenHttp(
  address: ListenAddress,
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<{ server: Server; url: string }> {
  const server = createServer({ keepAliveTimeout: 30_000 }, (req, res) => {
    if (req.url === "/healthz") {
      res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
      return;
    }
    handler(req, res);
  });
  if (address.kind === "unix") {
    await mkdir(dirname(address.path), { recursive: true, mode: 0o755 });
    await rm(address.path, { force: true });
    await new Promise<void>((resolve, reject) => server.once("error", reject).listen(address.path, resolve));
    await chmod(address.path, 0o600);
    return { server, url: `unix://${address.path}` };
  }
  await new Promise<void>((resolve, reject) => server.once("error", reject).listen(address.port, address.host, resolve));
  const bound = server.address();
  const port = typeof bound === "object" && bound ? bound.port : address.port;
  return { server, url: `http://${address.host.includes(":") ? `[${address.host}]` : address.host}:${port}` };
}
