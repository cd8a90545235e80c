// The DNS listeners on hostile traffic over real sockets (loopback, an ephemeral port; no root needed).
import { test } from "node:test";
import assert from "node:assert/strict";
import { createSocket } from "node:dgram";
import { connect } from "node:net";
import dnsPacket from "dns-packet";
import { dnsLimits, listenSandboxDns } from "../../src/network/dns-server.ts";

const query = (name: string, id = 1) => dnsPacket.encode({ type: "query", id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: "A", name }] });

async function server(t: { after(fn: () => unknown): void }, clientAddress = "127.0.0.1") {
  const answered: string[] = [];
  const listener = await listenSandboxDns({
    address: "127.0.0.1",
    port: 0,
    clientAddress,
    answer: async (msg) => {
      const q = dnsPacket.decode(msg);
      answered.push(q.questions?.[0]?.name ?? "");
      return Buffer.from(dnsPacket.encode({ type: "response", id: q.id ?? 0, questions: q.questions ?? [], answers: [{ type: "A", name: q.questions?.[0]?.name ?? "", ttl: 5, data: "10.250.0.2" }] }));
    },
  });
  t.after(() => listener.close());
  return { port: listener.port, answered };
}

function udpAsk(port: number, msg: Uint8Array, timeoutMs = 1000): Promise<Buffer | "timeout"> {
  return new Promise((resolve) => {
    const s = createSocket("udp4");
    const timer = setTimeout(() => (s.close(), resolve("timeout")), timeoutMs);
    s.on("message", (m) => (clearTimeout(timer), s.close(), resolve(m)));
    s.send(msg, port, "127.0.0.1");
  });
}

function tcpAsk(port: number, bytes: Buffer, timeoutMs = 1000): Promise<Buffer | "closed" | "timeout"> {
  return new Promise((resolve) => {
    const s = connect({ port, host: "127.0.0.1" });
    let data = Buffer.alloc(0);
    const timer = setTimeout(() => (s.destroy(), resolve("timeout")), timeoutMs);
    s.on("data", (c: Buffer) => {
      data = Buffer.concat([data, c]);
      if (data.length >= 2 && data.length >= 2 + data.readUInt16BE(0)) (clearTimeout(timer), s.destroy(), resolve(data.subarray(2)));
    });
    s.on("close", () => (clearTimeout(timer), resolve("closed")));
    s.on("error", () => {});
    s.write(bytes);
  });
}

const framed = (msg: Uint8Array) => Buffer.concat([Buffer.from([msg.length >> 8, msg.length & 255]), msg]);

test("UDP and TCP queries from the sandbox's address are answered; other sources are ignored", async (t) => {
  const ok = await server(t);
  const udp = await udpAsk(ok.port, query("api.test", 7));
  assert.ok(udp !== "timeout" && dnsPacket.decode(udp).id === 7);
  const tcp = await tcpAsk(ok.port, framed(query("api.test", 8)));
  assert.ok(Buffer.isBuffer(tcp) && dnsPacket.decode(tcp).id === 8);
  const stranger = await server(t, "127.0.0.2");
  assert.equal(await udpAsk(stranger.port, query("api.test")), "timeout");
  assert.equal(await tcpAsk(stranger.port, framed(query("api.test"))), "closed");
  assert.deepEqual(stranger.answered, []);
});

test("oversized datagrams, oversized or truncated TCP frames and too many connections do not stop the server", async (t) => {
  const { port, answered } = await server(t);
  assert.equal(await udpAsk(port, Buffer.alloc(60_000, 1), 300), "timeout");
  assert.equal(await tcpAsk(port, Buffer.from([0xff, 0xff, ...Buffer.alloc(100)])), "closed", "a 65535-byte frame is refused");
  assert.equal(await tcpAsk(port, Buffer.from([0x00, 0x05, 1, 2, 3, 4, 5])), "closed", "shorter than a header");
  // connections that never finish a frame: the limit holds them out, the rest is still served over UDP
  const idle = Array.from({ length: dnsLimits.tcpConnections + 4 }, () => connect({ port, host: "127.0.0.1" }).on("error", () => {}));
  t.after(() => idle.forEach((s) => s.destroy()));
  await new Promise((r) => setTimeout(r, 200));
  const still = await udpAsk(port, query("after.test", 9));
  assert.ok(still !== "timeout" && dnsPacket.decode(still).id === 9);
  assert.ok(!answered.includes(""), "garbage never reached the answerer");
});

test("a flood beyond the rate limit is dropped, and the server answers again once it passes", async (t) => {
  const { port } = await server(t);
  const s = createSocket("udp4");
  let replies = 0;
  s.on("message", () => replies++);
  await new Promise<void>((r) => s.bind(0, "127.0.0.1", () => r()));
  for (let i = 0; i < dnsLimits.burst * 2; i++) s.send(query("flood.test", i), port, "127.0.0.1");
  await new Promise((r) => setTimeout(r, 500));
  s.close();
  assert.ok(replies <= dnsLimits.burst + dnsLimits.queriesPerSecond, `${replies} replies`);
  assert.ok(replies >= dnsLimits.inFlight, `${replies} replies`);
  await new Promise((r) => setTimeout(r, 300));
  assert.notEqual(await udpAsk(port, query("calm.test")), "timeout");
});
