// Raw TCP exposure: 127.0.0.1 listeners here whose every accepted connection becomes a sandbox port dial.
import { once } from "node:events";
import { createServer, type Server, type Socket } from "node:net";
import { CleanroomError } from "../errors/index.ts";
import type { PortDialer } from "./https-proxy.ts";
import { tunnel } from "./tunnel.ts";

/** `[host:]guest`: listen on 127.0.0.1:host (default: the guest port) and forward to the sandbox's guest port. */
export interface PortMapping {
  hostPort: number;
  guestPort: number;
}

export function parsePortMapping(text: string): PortMapping {
  const match = /^(?:(\d{1,5}):)?(\d{1,5})$/.exec(text.trim());
  const port = (value: string | undefined) => (value === undefined ? undefined : Number(value));
  const guestPort = port(match?.[2]);
  const hostPort = port(match?.[1]) ?? guestPort;
  const valid = (p: number | undefined): p is number => p !== undefined && p >= 1 && p <= 65535;
  if (!valid(guestPort) || !valid(hostPort)) throw new CleanroomError("invalid_argument", `${JSON.stringify(text)}: expected [host:]guest with ports 1..65535, e.g. 8080:3000 or 3000`);
  return { hostPort, guestPort };
}

/** A local client that closes or resets its connection is ordinary, not worth a warning. */
const LOCAL_HANGUPS = new Set(["ERR_STREAM_PREMATURE_CLOSE", "ECONNRESET", "EPIPE"]);

export interface TcpForwarding {
  /** `127.0.0.1:port → <label>:guest` lines */
  describe(): string[];
  close(): Promise<void>;
}

/** Listens on loopback for each mapping; every accepted connection is piped both ways to a fresh dial. */
export async function startTcpForwarding(dial: PortDialer, mappings: PortMapping[], opts: { label: string; warn: (line: string) => void }): Promise<TcpForwarding> {
  const servers: Server[] = [];
  const sockets = new Set<Socket>();
  const forward = (socket: Socket, guestPort: number) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    void dial(guestPort).then((remote) => tunnel(socket, remote)).catch((err: Error) => {
      if (!LOCAL_HANGUPS.has((err as NodeJS.ErrnoException).code ?? "")) opts.warn(`${opts.label}:${guestPort}: ${err.message}`);
      socket.destroy();
    });
  };
  try {
    for (const { hostPort, guestPort } of mappings) {
      const server = createServer((socket) => forward(socket, guestPort));
      servers.push(server);
      server.listen(hostPort, "127.0.0.1");
      await once(server, "listening");
    }
  } catch (err) {
    for (const server of servers) server.close();
    throw new CleanroomError("failed_precondition", `cannot listen on 127.0.0.1: ${(err as Error).message}`);
  }
  return {
    describe: () => mappings.map((m, i) => {
      const address = servers[i]?.address();
      return `127.0.0.1:${typeof address === "object" && address ? address.port : m.hostPort} → ${opts.label}:${m.guestPort}`;
    }),
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
    },
  };
}
