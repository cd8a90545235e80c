import type { Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { CleanroomError } from "../errors/index.ts";

/** Default endpoint: root's system socket, else the user's runtime dir (matches the daemon's default). */
export function defaultHost(env: NodeJS.ProcessEnv = process.env): string {
  if (process.getuid?.() === 0 || !env.XDG_RUNTIME_DIR) return "unix:///var/run/cleanroom/cleanroom.sock";
  return `unix://${env.XDG_RUNTIME_DIR}/cleanroom/cleanroom.sock`;
}

/**
 * A Connect transport for `unix:///path` or `http://host:port`. HTTP/1.1 on purpose: it avoids loading
 * node:http2 (tens of ms of CLI start-up) and is all unary and server-streaming calls need.
 */
export function createTransport(host: string): Transport {
  if (host.startsWith("unix://") || host.startsWith("/")) {
    const socketPath = host.startsWith("/") ? host : host.slice("unix://".length);
    if (!socketPath.startsWith("/")) throw new CleanroomError("invalid_argument", `--host ${host}: the socket path must be absolute`);
    return createConnectTransport({ baseUrl: "http://localhost", httpVersion: "1.1", nodeOptions: { socketPath } });
  }
  if (host.startsWith("http://") || host.startsWith("https://")) {
    return createConnectTransport({ baseUrl: host.replace(/\/+$/, ""), httpVersion: "1.1" });
  }
  throw new CleanroomError("invalid_argument", `--host ${host}: expected unix:///path, http://host:port or https://host:port`);
}
