import { once } from "node:events";
import { createServer, type Server, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import { pipeline } from "node:stream/promises";
import { CleanroomError } from "../../errors/index.ts";
import { Cleanroom, enumName, type SandboxHandle } from "../../sdk/index.ts";

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

export interface Forwarding {
  /** the host addresses, as `127.0.0.1:port → guest port` lines */
  describe(): string[];
  close(): Promise<void>;
}

/** Listens on loopback for each mapping; every accepted connection becomes a DialSandboxPort stream. */
export async function startForwarding(sandbox: SandboxHandle, mappings: PortMapping[]): Promise<Forwarding> {
  const servers: Server[] = [];
  const sockets = new Set<Socket>();
  const forward = (socket: Socket, guestPort: number) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    let remote: Duplex | undefined;
    void sandbox.dialPort(guestPort).then((dialed) => {
      remote = dialed;
      return Promise.all([pipeline(socket, dialed), pipeline(dialed, socket)]);
    }).catch((err: Error) => {
      // the dial's own reason (nothing listens, sandbox gone) says more than the pipe that noticed it
      const reason = (remote?.errored as Error | null | undefined) ?? err;
      const hungUpHere = reason === err && LOCAL_HANGUPS.has((err as NodeJS.ErrnoException).code ?? "");
      if (!hungUpHere) process.stderr.write(`cleanroom: warning: ${sandbox.id}:${guestPort}: ${reason.message}\n`);
      socket.destroy();
      remote?.destroy();
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
      return `127.0.0.1:${typeof address === "object" && address ? address.port : m.hostPort} → ${sandbox.id}:${m.guestPort}`;
    }),
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
    },
  };
}

const LIVENESS_CHECK_MS = 1000;

/** `port-forward --in <id> [host:]guest…`: forwards until Ctrl-C, or until the sandbox is gone (exit 1). */
export async function portForward(specs: string[], flags: { host?: string; in?: string }): Promise<number> {
  if (!flags.in) throw new CleanroomError("invalid_argument", "port-forward needs --in <sandbox-id>");
  if (!specs.length) throw new CleanroomError("invalid_argument", "name at least one [host:]guest port, e.g. 8080:3000");
  const mappings = specs.map(parsePortMapping);
  const client = new Cleanroom({ ...(flags.host ? { host: flags.host } : {}) });
  const sandbox = client.sandbox(flags.in);
  await client.sandboxes.getSandbox({ sandboxId: sandbox.id });
  const forwarding = await startForwarding(sandbox, mappings);
  for (const line of forwarding.describe()) process.stderr.write(`cleanroom: forwarding ${line}\n`);
  const ended = await new Promise<string>((resolve) => {
    process.once("SIGINT", () => resolve("interrupted"));
    process.once("SIGTERM", () => resolve("interrupted"));
    const timer = setInterval(() => {
      client.sandboxes.getSandbox({ sandboxId: sandbox.id }).then(
        ({ sandbox: info }) => {
          const status = enumName(info?.status, "SANDBOX_STATUS_");
          if (status === "STOPPED" || status === "FAILED" || status === "STOPPING") resolve(`sandbox ${sandbox.id} is ${status}`);
        },
        (err: Error) => resolve(err.message),
      );
    }, LIVENESS_CHECK_MS);
    timer.unref();
  });
  await forwarding.close();
  if (ended === "interrupted") return 0;
  process.stderr.write(`cleanroom: stopped forwarding: ${ended}\n`);
  return 1;
}
