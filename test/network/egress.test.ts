// Default deny, trusted DNS and blocked-connection reporting with real netns, veth, nftables and DNS.
// Run as root: npx node --test test/network/egress.test.ts
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { netWorld } from "./world.ts";

function setElements(table: string, set: string): { val: unknown; timeout?: number }[] {
  const out = JSON.parse(execFileSync("nft", ["-j", "list", "set", "inet", table, set], { encoding: "utf8" })) as { nftables: { set?: { elem?: unknown[] } }[] };
  return (out.nftables.find((i) => i.set)?.set?.elem ?? []).map((e) => {
    const wrapped = (e as { elem?: { val: unknown; timeout?: number } }).elem;
    return wrapped ?? { val: e };
  });
}

test("an allowed host:port is reachable by name and another port on the same host is refused and reported", async (t) => {
  const w = await netWorld(t);
  const sb = await w.sandbox({ allow: [{ host: "api.test", ports: [8080] }] });

  const answer = await sb.resolve("api.test");
  assert.equal(answer.rcode, "NOERROR");
  assert.deepEqual(answer.answers?.map((a) => a.data), [w.upstream]);
  // the answer's TTL stays below the element's timeout (60 s upstream TTL → element 60 s, answer 50 s)
  assert.equal(answer.answers?.[0]?.ttl, 50);
  const elements = setElements(w.table, `allow-${sb.id}-default`);
  assert.deepEqual(elements.map((e) => e.val), [{ concat: [w.upstream, 8080] }]);
  assert.ok(elements[0]!.timeout! >= 59 && elements[0]!.timeout! <= 60, `element timeout ${elements[0]!.timeout}`);

  assert.deepEqual(await sb.http(w.upstream, 8080), { status: 200, body: "upstream 8080 /\n" });
  assert.equal(await sb.connect(w.upstream, 9090), "refused");
  const event = await w.waitForEvent((e) => e.type === "connection_blocked" && e.sandboxId === sb.id && e.port === 9090);
  assert.deepEqual({ ...event, at: undefined }, {
    type: "connection_blocked",
    sandboxId: sb.id,
    destination: w.upstream,
    port: 9090,
    protocol: "tcp",
    reason: "host_not_allowed",
    target: "egress",
    source: sb.network.sandboxAddress,
    at: undefined,
  });
  // the kernel retransmits nothing after a reset, and one attempt is one event
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(w.events.filter((e) => e.type === "connection_blocked" && e.port === 9090).length, 1);
});

test("without a DNS answer first, an allowed name's address is not reachable: the set is filled only by trusted DNS", async (t) => {
  const w = await netWorld(t);
  const sb = await w.sandbox({ allow: [{ host: "api.test", ports: [8080] }] });
  assert.equal(await sb.connect(w.upstream, 8080), "refused");
  await sb.resolve("api.test");
  assert.equal(await sb.connect(w.upstream, 8080), "connected");
});

test("a name not in the allowlist is REFUSED and reported; AAAA of an allowed name is empty; the gateway name resolves to the host side", async (t) => {
  const w = await netWorld(t);
  const sb = await w.sandbox({ allow: [{ host: "api.test", ports: [8080] }] });
  const refused = await sb.resolve("other.test");
  assert.equal(refused.rcode, "REFUSED");
  assert.deepEqual(refused.answers, []);
  const event = await w.waitForEvent((e) => e.type === "dns_query_denied" && e.sandboxId === sb.id);
  assert.deepEqual({ ...event, at: undefined }, { type: "dns_query_denied", sandboxId: sb.id, name: "other.test", queryType: "A", reason: "host_not_allowed", at: undefined });
  assert.equal((await sb.resolve("OTHER.test", "A", true)).rcode, "REFUSED", "over TCP too, whatever the case");
  const aaaa = await sb.resolve("api.test", "AAAA");
  assert.equal(aaaa.rcode, "NOERROR");
  assert.deepEqual(aaaa.answers, []);
  const tcp = await sb.resolve("API.Test", "A", true);
  assert.equal(tcp.rcode, "NOERROR", "allowed over TCP, case-insensitively");
  assert.deepEqual(tcp.answers?.map((a) => a.data), [w.upstream]);
  const gw = await sb.resolve("gateway.cleanroom.internal");
  assert.deepEqual(gw.answers?.map((a) => a.data), [sb.network.hostAddress]);
  // an unlisted name's address stays closed even though the sandbox knows it
  assert.equal(await sb.connect(w.upstream, 9090), "refused");
});

test("an IP literal is denied unless the policy lists it, and then only on its port", async (t) => {
  const w = await netWorld(t);
  const denied = await w.sandbox({ allow: [{ host: "api.test", ports: [8080] }] });
  assert.equal(await denied.connect(w.upstream, 8080), "refused");
  await w.waitForEvent((e) => e.type === "connection_blocked" && e.sandboxId === denied.id && e.port === 8080);

  const literal = await w.sandbox({ allow: [{ host: w.upstream, ports: [9090] }] });
  assert.deepEqual(await literal.http(w.upstream, 9090), { status: 200, body: "upstream 9090 /\n" });
  assert.equal(await literal.connect(w.upstream, 8080), "refused");
});

test("DNS answers pointing at loopback, metadata or the sandbox pool are filtered, and those addresses stay unreachable", async (t) => {
  const w = await netWorld(t);
  const sb = await w.sandbox({ allow: [{ host: "meta.test", ports: [80] }, { host: "mixed.test", ports: [8080] }] });
  const meta = await sb.resolve("meta.test");
  assert.equal(meta.rcode, "NOERROR");
  assert.deepEqual(meta.answers, []);
  const mixed = await sb.resolve("mixed.test");
  assert.deepEqual(mixed.answers?.map((a) => a.data), [w.upstream]);
  assert.equal(await sb.connect("169.254.169.254", 80), "refused");
  const event = await w.waitForEvent((e) => e.type === "connection_blocked" && e.destination === "169.254.169.254");
  assert.equal(event.type === "connection_blocked" && event.target, "egress");
});

test("the host is reachable only on the gateway port and DNS of the sandbox's own host address", async (t) => {
  const w = await netWorld(t);
  const sb = await w.sandbox({ allow: [{ host: "api.test", ports: [8080] }] });
  const { createServer } = await import("node:net");
  const listen = (host: string, port: number) =>
    new Promise<void>((resolve, reject) => {
      const s = createServer((c) => c.on("error", () => {}).end("host\n"));
      s.once("error", reject);
      s.listen(port, host, () => resolve());
      w.defer(() => new Promise((r) => s.close(r)));
    });
  // the gateway (issue 4) and a stray service on the same address, one on the upstream-facing address, one on loopback
  await listen(sb.network.hostAddress, 18170);
  await listen(sb.network.hostAddress, 18171);
  await listen(w.upstreamHostSide, 18172);
  await listen("127.0.0.1", 18173);
  assert.equal(await sb.connect(sb.network.hostAddress, 18170), "connected", "gateway port");
  assert.equal(await sb.connect(sb.network.hostAddress, 18171), "refused");
  assert.equal(await sb.connect(w.upstreamHostSide, 18172), "refused");
  // 127.0.0.1 is the sandbox's own loopback: nothing of the host's is there
  assert.equal(await sb.connect("127.0.0.1", 18173), "refused");
  // anything but TCP gets an ICMP admin-prohibited: the sandbox learns quickly that it is not allowed
  assert.equal(await sb.probe({ op: "udp", host: sb.network.hostAddress, port: 18174 }), "unreachable");
  const hostEvent = await w.waitForEvent((e) => e.type === "connection_blocked" && e.port === 18172);
  assert.equal(hostEvent.type === "connection_blocked" && hostEvent.target, "host");
  await w.waitForEvent((e) => e.type === "connection_blocked" && e.port === 18174 && e.protocol === "udp");
});

test("a sandbox cannot reach another sandbox, nor the other's DNS server", async (t) => {
  const w = await netWorld(t);
  const a = await w.sandbox({ allow: [{ host: "api.test", ports: [8080] }] });
  const b = await w.sandbox({ allow: [{ host: "api.test", ports: [8080] }] });
  assert.equal(await b.probe({ op: "listen", port: 7000 }), "listening");
  assert.equal(await a.connect(b.network.sandboxAddress, 7000), "refused");
  assert.equal(await a.connect(b.network.hostAddress, 53), "refused");
  const viaOther = await a.probe<{ error?: string }>({ op: "dns", server: b.network.hostAddress, name: "api.test", timeoutMs: 1000 });
  assert.ok(viaOther.error, `B's DNS server must not answer A: ${JSON.stringify(viaOther)}`);
  // B's own traffic is unaffected
  assert.equal((await b.resolve("api.test")).rcode, "NOERROR");
  await w.waitForEvent((e) => e.type === "connection_blocked" && e.sandboxId === a.id && e.destination === b.network.sandboxAddress);
});
