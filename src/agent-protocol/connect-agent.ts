import { connect, type Socket } from "node:net";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { CleanroomError, messageOf } from "../errors/index.ts";
import { AgentConnection } from "./agent-connection.ts";
import type { AgentClient } from "./types.ts";

const DEFAULT_CONNECT_TIMEOUT_MS = 5000;
const RETRYABLE = new Set(["ECONNREFUSED", "ENOENT"]);

/** Connects once; the socket is destroyed if the deadline passes or the signal aborts first. */
function openSocket(path: string, timeoutMs: number, onTimeout: () => Error, signal?: AbortSignal): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ path });
    const settle = (err?: Error) => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      socket.off("error", settle);
      if (err) {
        socket.destroy();
        reject(err);
      } else {
        resolve(socket);
      }
    };
    const onAbort = () => settle(signal!.reason as Error);
    const timer = setTimeout(() => settle(onTimeout()), Math.max(0, timeoutMs));
    signal?.addEventListener("abort", onAbort, { once: true });
    socket.once("error", settle);
    socket.once("connect", () => settle());
  });
}

/** Waits for HELLO on a connected socket; the connection is closed on timeout or abort. */
function awaitHello(connection: AgentConnection, timeoutMs: number, onTimeout: () => Error, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const settle = (err?: Error) => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      if (err) {
        connection.close();
        reject(err);
      } else {
        resolve();
      }
    };
    const onAbort = () => settle(signal!.reason as Error);
    const timer = setTimeout(() => settle(onTimeout()), Math.max(0, timeoutMs));
    signal?.addEventListener("abort", onAbort, { once: true });
    connection.ready.then(() => settle(), (err: Error) => settle(err));
  });
}

/**
 * Connects to an agent's unix socket and waits for HELLO; retries ECONNREFUSED/ENOENT until timeoutMs
 * (default 5000). Rejects with agent_unavailable (no agent in time), agent_protocol_error (it answered
 * wrongly, e.g. another protocol version), or the signal's reason when aborted.
 */
export async function connectAgent(socketPath: string, opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<AgentClient> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const deadline = performance.now() + timeoutMs;
  let retryDelayMs = 2;
  for (;;) {
    opts.signal?.throwIfAborted();
    let socket: Socket;
    try {
      socket = await openSocket(socketPath, deadline - performance.now(), () => timedOut(socketPath, timeoutMs, "connect"), opts.signal);
    } catch (err) {
      if (opts.signal?.aborted) throw opts.signal.reason;
      const code = (err as NodeJS.ErrnoException).code;
      if (code === undefined || !RETRYABLE.has(code)) throw asUnavailable(err, socketPath);
      if (performance.now() + retryDelayMs > deadline) throw timedOut(socketPath, timeoutMs, code);
      await sleep(retryDelayMs, undefined, opts.signal ? { signal: opts.signal } : {}).catch(() => {
        throw opts.signal?.reason;
      });
      retryDelayMs = Math.min(retryDelayMs * 2, 100);
      continue;
    }
    const connection = new AgentConnection(socket);
    await awaitHello(connection, deadline - performance.now(), () => timedOut(socketPath, timeoutMs, "no HELLO"), opts.signal);
    return connection;
  }
}

function timedOut(socketPath: string, timeoutMs: number, last: string): CleanroomError {
  return new CleanroomError("agent_unavailable", `the sandbox agent at ${socketPath} did not answer within ${timeoutMs} ms (${last}); check that the sandbox is running`);
}

function asUnavailable(err: unknown, socketPath: string): Error {
  if (err instanceof CleanroomError) return err;
  return new CleanroomError("agent_unavailable", `cannot connect to the sandbox agent at ${socketPath}: ${messageOf(err)}`);
}
