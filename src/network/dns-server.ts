/**
 * The DNS policy server's sockets: one UDP and one TCP listener per sandbox, bound to the sandbox's host-side
 * address. The packet's source says which sandbox asks (anti-spoofed by nft), never anything in the message.
 * Everything is bounded: message size, queries per second, queries in flight, TCP connections and their life.
 */
import { createSocket } from "node:dgram";
import { createServer, type Socket } from "node:net";
import { maxQueryBytes, maxUdpAnswerBytes } from "./dns-message.ts";

export interface DnsListenerOptions {
  /** the sandbox's host-side address */
  address: string;
  port: number;
  /** only this source is answered: the sandbox's own address */
  clientAddress: string;
  /** the reply to a message, or null for none */
  answer(message: Buffer, maxAnswerBytes: number): Promise<Buffer | null>;
  onProblem?(message: string, err: unknown): void;
}

export interface DnsListener {
  /** the UDP port bound (the TCP listener uses the same); useful with port 0 */
  port: number;
  close(): Promise<void>;
}

export const dnsLimits = {
  queriesPerSecond: 200,
  burst: 400,
  inFlight: 64,
  tcpConnections: 8,
  tcpIdleMs: 10_000,
  tcpQueriesPerConnection: 100,
  tcpAnswerBytes: 4096,
};

/** Starts both listeners; on failure neither is left open. */
export async function listenSandboxDns(opts: DnsListenerOptions): Promise<DnsListener> {
  const gate = new QueryGate();
  const udp = createSocket({ type: "udp4", reuseAddr: false });
  const tcp = createServer({ allowHalfOpen: false });
  const sockets = new Set<Socket>();
  try {
    await new Promise<void>((resolve, reject) => {
      udp.once("error", reject);
      udp.bind({ address: opts.address, port: opts.port, exclusive: true }, () => {
        udp.off("error", reject);
        resolve();
      });
    });
    tcp.maxConnections = dnsLimits.tcpConnections;
    await new Promise<void>((resolve, reject) => {
      tcp.once("error", reject);
      tcp.listen({ host: opts.address, port: udp.address().port, exclusive: true }, () => {
        tcp.off("error", reject);
        resolve();
      });
    });
  } catch (err) {
    udp.close();
    tcp.close();
    throw err;
  }
  udp.on("error", (err) => opts.onProblem?.("DNS UDP socket error", err));
  tcp.on("error", (err) => opts.onProblem?.("DNS TCP server error", err));
  udp.on("message", (msg, rinfo) => {
    if (rinfo.address !== opts.clientAddress || msg.length > maxQueryBytes || !gate.admit()) return;
    void answerSafely(opts, msg, maxUdpAnswerBytes).then((reply) => {
      gate.done();
      if (reply) udp.send(reply, rinfo.port, rinfo.address);
    });
  });
  tcp.on("connection", (socket) => {
    if (socket.remoteAddress !== opts.clientAddress) return void socket.destroy();
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    serveTcp(socket, opts, gate);
  });
  return {
    port: udp.address().port,
    close: async () => {
      for (const s of sockets) s.destroy();
      await Promise.all([new Promise<void>((r) => udp.close(() => r())), new Promise<void>((r) => tcp.close(() => r()))]);
    },
  };
}

/** Length-prefixed queries, answered one at a time, until idle, too many or malformed. */
function serveTcp(socket: Socket, opts: DnsListenerOptions, gate: QueryGate): void {
  let pending = Buffer.alloc(0);
  let busy = false;
  let served = 0;
  socket.setTimeout(dnsLimits.tcpIdleMs, () => socket.destroy());
  socket.on("error", () => socket.destroy());
  const pump = async () => {
    if (busy) return;
    busy = true;
    socket.pause();
    try {
      while (pending.length >= 2) {
        const len = pending.readUInt16BE(0);
        if (len > maxQueryBytes || len < 12) return void socket.destroy();
        if (pending.length < 2 + len) break;
        const msg = pending.subarray(2, 2 + len);
        pending = Buffer.from(pending.subarray(2 + len));
        if (++served > dnsLimits.tcpQueriesPerConnection || !gate.admit()) return void socket.destroy();
        const reply = await answerSafely(opts, msg, dnsLimits.tcpAnswerBytes);
        gate.done();
        if (!reply) return void socket.destroy();
        if (socket.destroyed) return;
        const framed = Buffer.alloc(2 + reply.length);
        framed.writeUInt16BE(reply.length, 0);
        reply.copy(framed, 2);
        socket.write(framed);
      }
    } finally {
      busy = false;
      if (!socket.destroyed) socket.resume();
    }
  };
  socket.on("data", (chunk: Buffer) => {
    if (pending.length + chunk.length > 2 + maxQueryBytes + 2) return void socket.destroy();
    pending = Buffer.concat([pending, chunk]);
    void pump();
  });
}

async function answerSafely(opts: DnsListenerOptions, msg: Buffer, maxAnswerBytes: number): Promise<Buffer | null> {
  try {
    return await opts.answer(msg, maxAnswerBytes);
  } catch (err) {
    opts.onProblem?.("DNS answer threw", err);
    return null;
  }
}

/** A token bucket (queries per second) and a cap on queries in flight; beyond either, queries are dropped. */
class QueryGate {
  private tokens = dnsLimits.burst;
  private last = performance.now();
  private inFlight = 0;
  admit(): boolean {
    const now = performance.now();
    this.tokens = Math.min(dnsLimits.burst, this.tokens + ((now - this.last) / 1000) * dnsLimits.queriesPerSecond);
    this.last = now;
    if (this.tokens < 1 || this.inFlight >= dnsLimits.inFlight) return false;
    this.tokens -= 1;
    this.inFlight += 1;
    return true;
  }
  done(): void {
    this.inFlight -= 1;
  }
}
