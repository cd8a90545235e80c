// DialSandboxPort from the client side: a bidirectional stream, which Connect carries only over HTTP/2, so this one
// call uses connect-node's HTTP/2 transport (loaded on use; every other call keeps the HTTP/1.1 fast path). Each dial
// has an HTTP/2 connection of its own, closed with it: HTTP/2 flow control is per connection too, so dials sharing one
// would stall together behind one whose reader is slow, where TCP connections would not.
import { connect as netConnect } from "node:net";
import { Duplex } from "node:stream";
import { ConnectError, createClient } from "@connectrpc/connect";
import { createWritableIterable } from "@connectrpc/connect/protocol";
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { SandboxService, type DialSandboxPortRequest } from "../api/index.ts";
import { CleanroomError, REASON_CODE_HEADER, type ReasonCode } from "../errors/index.ts";
import type { Endpoint } from "./connect-json.ts";

type DialMessage = Partial<Pick<DialSandboxPortRequest, "sandboxId" | "port" | "data" | "closeWrite">>;

/**
 * A TCP connection to 127.0.0.1:`port` inside the sandbox, as a Duplex: write to the service, read its answer, end()
 * half-closes towards it. Errors carry the daemon's reason code (failed_precondition when nothing listens).
 * It also answers the few net.Socket calls node's http.Agent makes (setTimeout, setKeepAlive, ref…), so an HTTP
 * client can pool these connections.
 */
export class SandboxPortConnection extends Duplex {
  /** idle milliseconds before a 'timeout' event (0: never), as on net.Socket */
  timeout = 0;
  readonly #outgoing = createWritableIterable<DialMessage>();
  readonly #abort = new AbortController();
  readonly #session: Http2SessionManager;
  #resumeReading: (() => void) | undefined;
  // once the daemon ended the stream, bytes still coming from this side go nowhere, as on a reset TCP connection
  #requestsOpen = true;
  #idleTimer: NodeJS.Timeout | undefined;

  constructor(endpoint: Endpoint, sandboxId: string, port: number) {
    super();
    const socketPath = endpoint.socketPath;
    const baseUrl = socketPath ? "http://localhost" : endpoint.baseUrl;
    this.#session = new Http2SessionManager(baseUrl, undefined, socketPath ? { createConnection: () => netConnect(socketPath) } : endpoint.ca ? { ca: endpoint.ca } : undefined);
    const token = endpoint.token;
    const headers = endpoint.headers ?? {};
    const client = createClient(SandboxService, createConnectTransport({
      httpVersion: "2", useBinaryFormat: true, baseUrl, sessionManager: this.#session,
      interceptors: token || Object.keys(headers).length ? [(next) => (req) => {
        for (const [name, value] of Object.entries(headers)) req.header.set(name, value);
        if (token) req.header.set("authorization", `Bearer ${token}`);
        return next(req);
      }] : [],
    }));
    void this.#outgoing.write({ sandboxId, port });
    void this.#receive(client.dialSandboxPort(this.#outgoing, { signal: this.#abort.signal })).finally(() => this.#session.abort());
  }

  async #receive(responses: AsyncIterable<{ data: Uint8Array }>): Promise<void> {
    try {
      for await (const response of responses) {
        this.#touch();
        if (!this.push(Buffer.from(response.data))) await new Promise<void>((resolve) => (this.#resumeReading = resolve));
      }
      this.#requestsOpen = false;
      this.#outgoing.close();
      this.push(null);
    } catch (err) {
      if (!this.destroyed) this.destroy(asCleanroomError(err));
    }
  }

  #send(message: DialMessage): Promise<void> {
    return this.#requestsOpen ? this.#outgoing.write(message) : Promise.resolve();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (err?: Error | null) => void): void {
    this.#touch();
    this.#send({ data: chunk }).then(() => done(), done);
  }

  override _final(done: (err?: Error | null) => void): void {
    this.#send({ closeWrite: true }).then(() => {
      this.#requestsOpen = false;
      this.#outgoing.close();
      done();
    }, done);
  }

  override _read(): void {
    const resume = this.#resumeReading;
    this.#resumeReading = undefined;
    resume?.();
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    clearTimeout(this.#idleTimer);
    this.#requestsOpen = false;
    this.#abort.abort();
    this.#outgoing.close();
    done(err);
  }

  setTimeout(ms: number, onTimeout?: () => void): this {
    this.timeout = ms;
    if (onTimeout) this.once("timeout", onTimeout);
    this.#touch();
    return this;
  }

  #touch(): void {
    clearTimeout(this.#idleTimer);
    this.#idleTimer = this.timeout > 0 && !this.destroyed ? setTimeout(() => this.emit("timeout"), this.timeout).unref() : undefined;
  }

  /** no TCP here: the bytes ride the daemon's HTTP/2 stream */
  setKeepAlive(): this {
    return this;
  }

  setNoDelay(): this {
    return this;
  }

  /** the shared HTTP/2 connection is unref'd while idle already */
  ref(): this {
    return this;
  }

  unref(): this {
    return this;
  }
}

function asCleanroomError(err: unknown): Error {
  if (!(err instanceof ConnectError)) return err as Error;
  const reason = err.metadata.get(REASON_CODE_HEADER) ?? "internal";
  return new CleanroomError(reason as ReasonCode, err.rawMessage);
}
