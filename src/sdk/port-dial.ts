// DialSandboxPort from the client side: a bidirectional stream, which Connect carries only over HTTP/2, so this one
// call uses connect-node's HTTP/2 transport (loaded on use; every other call keeps the HTTP/1.1 fast path).
import { connect as netConnect } from "node:net";
import { Duplex } from "node:stream";
import { ConnectError, createClient } from "@connectrpc/connect";
import { createWritableIterable } from "@connectrpc/connect/protocol";
import { createConnectTransport } from "@connectrpc/connect-node";
import { SandboxService, type DialSandboxPortRequest } from "../api/index.ts";
import { CleanroomError, REASON_CODE_HEADER, type ReasonCode } from "../errors/index.ts";

type DialMessage = Partial<Pick<DialSandboxPortRequest, "sandboxId" | "port" | "data" | "closeWrite">>;

/**
 * A TCP connection to 127.0.0.1:`port` inside the sandbox, as a Duplex: write to the service, read its answer, end()
 * half-closes towards it. Errors carry the daemon's reason code (failed_precondition when nothing listens).
 */
export function dialPort(host: string, sandboxId: string, port: number): Duplex {
  const url = new URL(host);
  const transport = createConnectTransport({
    httpVersion: "2",
    useBinaryFormat: true,
    ...(url.protocol === "unix:"
      ? { baseUrl: "http://localhost", nodeOptions: { createConnection: () => netConnect(url.pathname) } }
      : { baseUrl: host }),
  });
  const client = createClient(SandboxService, transport);
  const outgoing = createWritableIterable<DialMessage>();
  const abort = new AbortController();
  let resumeReading: (() => void) | undefined;
  // once the daemon ended the stream, bytes still coming from this side go nowhere, as on a reset TCP connection
  let requestsOpen = true;
  const send = (message: DialMessage) => (requestsOpen ? outgoing.write(message) : Promise.resolve());
  const connection = new Duplex({
    write(chunk: Buffer, _encoding, done) {
      send({ data: chunk }).then(() => done(), done);
    },
    final(done) {
      send({ closeWrite: true }).then(() => {
        requestsOpen = false;
        outgoing.close();
        done();
      }, done);
    },
    read() {
      resumeReading?.();
    },
    destroy(err, done) {
      requestsOpen = false;
      abort.abort();
      outgoing.close();
      done(err);
    },
  });
  void outgoing.write({ sandboxId, port });
  void (async () => {
    try {
      for await (const response of client.dialSandboxPort(outgoing, { signal: abort.signal })) {
        if (!connection.push(Buffer.from(response.data))) await new Promise<void>((resolve) => (resumeReading = resolve));
      }
      requestsOpen = false;
      outgoing.close();
      connection.push(null);
    } catch (err) {
      if (!connection.destroyed) connection.destroy(asCleanroomError(err));
    }
  })();
  return connection;
}

function asCleanroomError(err: unknown): Error {
  if (!(err instanceof ConnectError)) return err as Error;
  const reason = err.metadata.get(REASON_CODE_HEADER) ?? "internal";
  return new CleanroomError(reason as ReasonCode, err.rawMessage);
}
