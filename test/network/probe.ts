// Stands in for a sandbox's workload: run by the test inside the sandbox's netns (`ip netns exec`), it takes
// one JSON request per stdin line and answers one JSON line { id, result }. Every operation is time-bounded.
import { connect, createServer, type Socket } from "node:net";
import { createSocket } from "node:dgram";
import { networkInterfaces } from "node:os";
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import dnsPacket from "dns-packet";

type Request =
  | { id: number; op: "tcp"; host: string; port: number; timeoutMs?: number; localAddress?: string }
  | { id: number; op: "http"; host: string; port: number; path?: string; timeoutMs?: number }
  | { id: number; op: "dns"; server: string; port?: number; name: string; type?: "A" | "AAAA" | "TXT"; tcp?: boolean; raw?: string; timeoutMs?: number }
  | { id: number; op: "udp"; host: string; port: number; timeoutMs?: number }
  | { id: number; op: "listen"; port: number }
  | { id: number; op: "open"; host: string; port: number }
  | { id: number; op: "request"; conn: number; timeoutMs?: number }
  | { id: number; op: "ipv6" };

const conns = new Map<number, Socket>();
let nextConn = 1;

/** "connected", "refused" (RST), "timeout" (dropped), "unreachable" (ICMP error) or "error:<code>". */
function tcp(host: string, port: number, timeoutMs = 1500, localAddress?: string): Promise<string> {
  return new Promise((resolve) => {
    const s = connect({ host, port, ...(localAddress ? { localAddress } : {}) });
    const done = (r: string) => {
      clearTimeout(timer);
      s.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => done("timeout"), timeoutMs);
    s.once("connect", () => done("connected"));
    s.once("error", (err: NodeJS.ErrnoException) => {
      const code = err.code ?? "unknown";
      done(code === "ECONNREFUSED" ? "refused" : code === "EHOSTUNREACH" || code === "ENETUNREACH" ? "unreachable" : `error:${code}`);
    });
  });
}

function http(host: string, port: number, path = "/", timeoutMs = 2000): Promise<{ status?: number; body?: string; error?: string }> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    let data = "";
    const timer = setTimeout(() => finish({ error: "timeout" }), timeoutMs);
    const finish = (r: { status?: number; body?: string; error?: string }) => {
      clearTimeout(timer);
      s.destroy();
      resolve(r);
    };
    s.once("connect", () => s.write(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`));
    s.on("data", (c: Buffer) => (data += c.toString()));
    s.once("end", () => {
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(data)?.[1]);
      finish(status ? { status, body: data.split("\r\n\r\n")[1] ?? "" } : { error: "bad response" });
    });
    s.once("error", (err: NodeJS.ErrnoException) => finish({ error: err.code === "ECONNREFUSED" ? "refused" : (err.code ?? "unknown") }));
  });
}

async function dns(r: Extract<Request, { op: "dns" }>): Promise<unknown> {
  const query = r.raw
    ? Buffer.from(r.raw, "base64")
    : dnsPacket.encode({ type: "query", id: Math.floor(Math.random() * 65535), flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: r.type ?? "A", name: r.name }] });
  const reply = r.tcp ? await dnsTcp(r.server, r.port ?? 53, query, r.timeoutMs ?? 2000) : await dnsUdp(r.server, r.port ?? 53, query, r.timeoutMs ?? 2000);
  if (typeof reply === "string") return { error: reply };
  const decoded = dnsPacket.decode(reply);
  return {
    rcode: (decoded as { rcode?: string }).rcode,
    id: decoded.id,
    question: decoded.questions?.[0]?.name,
    answers: (decoded.answers ?? []).map((a) => ({ type: a.type, data: "data" in a ? a.data : undefined, ttl: "ttl" in a ? a.ttl : undefined })),
  };
}

function dnsUdp(server: string, port: number, query: Buffer, timeoutMs: number): Promise<Buffer | string> {
  return new Promise((resolve) => {
    const s = createSocket("udp4");
    const timer = setTimeout(() => finish("timeout"), timeoutMs);
    const finish = (r: Buffer | string) => {
      clearTimeout(timer);
      s.close();
      resolve(r);
    };
    s.on("message", (m) => finish(m));
    s.on("error", (e: NodeJS.ErrnoException) => finish(`error:${e.code}`));
    s.send(query, port, server);
  });
}

function dnsTcp(server: string, port: number, query: Buffer, timeoutMs: number): Promise<Buffer | string> {
  return new Promise((resolve) => {
    const s = connect({ host: server, port });
    let data = Buffer.alloc(0);
    const timer = setTimeout(() => finish("timeout"), timeoutMs);
    const finish = (r: Buffer | string) => {
      clearTimeout(timer);
      s.destroy();
      resolve(r);
    };
    s.once("connect", () => {
      const framed = Buffer.alloc(2 + query.length);
      framed.writeUInt16BE(query.length, 0);
      query.copy(framed, 2);
      s.write(framed);
    });
    s.on("data", (c: Buffer) => {
      data = Buffer.concat([data, c]);
      if (data.length >= 2 && data.length >= 2 + data.readUInt16BE(0)) finish(data.subarray(2, 2 + data.readUInt16BE(0)));
    });
    s.once("close", () => finish("closed"));
    s.once("error", (e: NodeJS.ErrnoException) => finish(`error:${e.code}`));
  });
}

/** Sends a datagram; "reply" if anything comes back within the timeout. */
function udp(host: string, port: number, timeoutMs = 1000): Promise<string> {
  return new Promise((resolve) => {
    const s = createSocket("udp4");
    const timer = setTimeout(() => finish("noreply"), timeoutMs);
    const finish = (r: string) => {
      clearTimeout(timer);
      s.close();
      resolve(r);
    };
    s.on("message", () => finish("reply"));
    s.on("error", (e: NodeJS.ErrnoException) => finish(e.code === "ECONNREFUSED" ? "refused" : e.code === "EHOSTUNREACH" ? "unreachable" : `error:${e.code}`));
    s.connect(port, host, () => s.send("hello"));
  });
}

/** A request on a kept-open connection: the status line, or what went wrong. */
function request(conn: number, timeoutMs = 2000): Promise<string> {
  const s = conns.get(conn);
  if (!s || s.destroyed) return Promise.resolve("closed");
  return new Promise((resolve) => {
    const onData = (c: Buffer) => finish(/^HTTP\/1\.1 (\d{3})/.exec(c.toString())?.[1] ?? "garbage");
    const onError = (e: NodeJS.ErrnoException) => finish(e.code === "ECONNRESET" ? "reset" : `error:${e.code}`);
    const onClose = () => finish("closed");
    const timer = setTimeout(() => finish("timeout"), timeoutMs);
    const finish = (r: string) => {
      clearTimeout(timer);
      s.off("data", onData).off("error", onError).off("close", onClose);
      resolve(r);
    };
    s.on("data", onData).on("error", onError).on("close", onClose);
    s.write("GET /again HTTP/1.1\r\nHost: x\r\n\r\n");
  });
}

async function handle(r: Request): Promise<unknown> {
  switch (r.op) {
    case "tcp":
      return tcp(r.host, r.port, r.timeoutMs, r.localAddress);
    case "http":
      return http(r.host, r.port, r.path, r.timeoutMs);
    case "dns":
      return dns(r);
    case "udp":
      return udp(r.host, r.port, r.timeoutMs);
    case "listen":
      return new Promise((resolve) => {
        const server = createServer((s) => s.end("hi\n"));
        server.once("error", (e: NodeJS.ErrnoException) => resolve(`error:${e.code}`));
        server.listen(r.port, "0.0.0.0", () => resolve("listening"));
      });
    case "open":
      return new Promise((resolve) => {
        const s = connect({ host: r.host, port: r.port });
        s.once("connect", () => {
          const id = nextConn++;
          conns.set(id, s);
          s.on("error", () => {});
          resolve({ conn: id });
        });
        s.once("error", (e: NodeJS.ErrnoException) => resolve({ error: e.code }));
      });
    case "request":
      return request(r.conn, r.timeoutMs);
    case "ipv6": {
      const v6 = Object.entries(networkInterfaces()).flatMap(([name, addrs]) => (addrs ?? []).filter((a) => a.family === "IPv6").map((a) => `${name}:${a.address}`));
      const disabled = readFileSync("/proc/sys/net/ipv6/conf/all/disable_ipv6", "utf8").trim();
      return { v6, disabled, connect: await tcp("fd00::2", 80, 1000), loopback6: await tcp("::1", 80, 1000) };
    }
  }
}

createInterface({ input: process.stdin }).on("line", (line) => {
  const r = JSON.parse(line) as Request;
  void handle(r).then(
    (result) => process.stdout.write(JSON.stringify({ id: r.id, result }) + "\n"),
    (err: Error) => process.stdout.write(JSON.stringify({ id: r.id, result: { error: err.message } }) + "\n"),
  );
});
process.stdin.on("end", () => process.exit(0));
process.stdout.write(JSON.stringify({ id: 0, result: "ready" }) + "\n");
