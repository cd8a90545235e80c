import { createServer, type Server } from "node:net";
import { chmod, rename, rm } from "node:fs/promises";

/** sun_path holds 108 bytes, NUL included. */
const maxSocketPathBytes = 107;

export interface ListeningAgentSocket {
  /** the listening socket's fd, to hand to runc as the agent's fd 3 */
  fd: number;
  /** closes the daemon's copy; the socket file stays, the agent keeps accepting on its copy */
  close(): Promise<void>;
}

interface HandleWithFd {
  fd?: unknown;
}

/**
 * Creates the listening unix socket the agent will accept on. Node (libuv) unlinks a pipe's path when
 * the server closes, so the socket is bound under a temporary name and renamed into place: the close then
 * unlinks a name that no longer exists, and `path` stays connectable for as long as the agent lives —
 * including across a daemon restart.
 */
export async function listenAgentSocket(path: string): Promise<ListeningAgentSocket> {
  const bindPath = `${path}.bind`;
  if (Buffer.byteLength(bindPath) > maxSocketPathBytes) {
    throw new Error(`agent socket path ${path} is too long for a unix socket (max ${maxSocketPathBytes - 5} bytes); use a shorter state dir`);
  }
  await rm(bindPath, { force: true });
  const server: Server = createServer();
  // connections are the agent's to accept; the daemon never serves this socket
  server.on("connection", (c) => c.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ path: bindPath, backlog: 64 }, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const close = () => new Promise<void>((resolve) => server.close(() => resolve()));
  try {
    const fd = (server as unknown as { _handle?: HandleWithFd })._handle?.fd;
    if (typeof fd !== "number" || fd < 0) throw new Error("cannot get the fd of a listening unix socket from this Node version");
    await chmod(bindPath, 0o600);
    await rename(bindPath, path);
    return { fd, close };
  } catch (err) {
    await close();
    await rm(bindPath, { force: true });
    throw err;
  }
}
