// What the DNS policy server answers and which set elements an answer opens. Injected resolver, no sockets.
import { test } from "node:test";
import assert from "node:assert/strict";
import dnsPacket from "dns-packet";
import { respond, ttlPlan, type ResponderContext } from "../../src/network/dns-responder.ts";
import { parseCidr } from "../../src/network/ipv4.ts";
import type { SetElement } from "../../src/network/nft-ruleset.ts";

function context(over: Partial<ResponderContext> & { records?: Record<string, { address: string; ttl: number }[] | string> } = {}) {
  const added: SetElement[][] = [];
  const denied: [string, string][] = [];
  const asked: string[] = [];
  let stage: string | null = over.activeStage?.() ?? "dependencies";
  const records = over.records ?? { "api.test": [{ address: "10.250.0.2", ttl: 60 }] };
  const ctx: ResponderContext = {
    sandboxId: "abc123def456",
    hostAddress: "10.213.0.1",
    gatewayName: "gateway.cleanroom.internal",
    names: new Map([
      ["api.test", new Map([["dependencies", [8080, 8443]], ["execution", [8080]]])],
      ["deps.test", new Map([["dependencies", [443]]])],
    ]),
    activeStage: () => stage,
    allowAll: () => false,
    resolver: {
      resolve4: async (name) => {
        asked.push(name);
        const r = records[name];
        if (r === undefined) throw Object.assign(new Error("nx"), { code: "ENOTFOUND" });
        if (typeof r === "string") throw Object.assign(new Error(r), { code: r });
        return r;
      },
    },
    blocked: ["127.0.0.0/8", "169.254.0.0/16", "10.213.0.0/16"].map(parseCidr),
    ttlFloorS: 30,
    ttlCapS: 3600,
    addElements: async (e) => void added.push(e),
    onDenied: (name, type) => void denied.push([name, type]),
    ...over,
  };
  return { ctx, added, denied, asked, setStage: (s: string | null) => (stage = s) };
}

async function ask(ctx: ResponderContext, name: string, type: "A" | "AAAA" | "TXT" = "A") {
  const msg = dnsPacket.encode({ type: "query", id: 9, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name }] });
  const reply = await respond(ctx, msg, 512);
  assert.ok(reply, "an answer");
  const d = dnsPacket.decode(reply);
  return { rcode: (d as { rcode?: string }).rcode, answers: (d.answers ?? []).map((a) => ["data" in a ? a.data : "", "ttl" in a ? a.ttl : -1]) };
}

test("an allowed name is resolved on the host, answered, and opened in every stage that lists it with that stage's ports", async () => {
  const { ctx, added } = context();
  assert.deepEqual(await ask(ctx, "api.test"), { rcode: "NOERROR", answers: [["10.250.0.2", 50]] });
  assert.deepEqual(added, [
    [
      { stage: "dependencies", address: "10.250.0.2", port: 8080, timeoutS: 60 },
      { stage: "dependencies", address: "10.250.0.2", port: 8443, timeoutS: 60 },
      { stage: "execution", address: "10.250.0.2", port: 8080, timeoutS: 60 },
    ],
  ]);
});

test("names outside the active stage are REFUSED and reported, without asking the resolver", async () => {
  const { ctx, denied, asked, added, setStage } = context();
  assert.deepEqual(await ask(ctx, "other.test"), { rcode: "REFUSED", answers: [] });
  setStage("execution");
  assert.deepEqual(await ask(ctx, "deps.test", "AAAA"), { rcode: "REFUSED", answers: [] });
  setStage(null);
  assert.deepEqual(await ask(ctx, "api.test"), { rcode: "REFUSED", answers: [] });
  assert.deepEqual(denied, [["other.test", "A"], ["deps.test", "AAAA"], ["api.test", "A"]]);
  assert.deepEqual(asked, []);
  assert.deepEqual(added, []);
});

test("AAAA and other types of an allowed name are empty answers; the gateway name is the host side", async () => {
  const { ctx, asked } = context();
  assert.deepEqual(await ask(ctx, "api.test", "AAAA"), { rcode: "NOERROR", answers: [] });
  assert.deepEqual(await ask(ctx, "api.test", "TXT"), { rcode: "NOERROR", answers: [] });
  assert.deepEqual(asked, []);
  assert.deepEqual(await ask(ctx, "Gateway.Cleanroom.Internal"), { rcode: "NOERROR", answers: [["10.213.0.1", 300]] });
});

test("resolver outcomes map to NXDOMAIN, NODATA and SERVFAIL; a failed set update is SERVFAIL, never an answer that will not work", async () => {
  const nx = context({ records: {} });
  assert.equal((await ask(nx.ctx, "api.test")).rcode, "NXDOMAIN");
  const nodata = context({ records: { "api.test": "ENODATA" } });
  assert.deepEqual(await ask(nodata.ctx, "api.test"), { rcode: "NOERROR", answers: [] });
  const broken = context({ records: { "api.test": "ECONNREFUSED" } });
  assert.equal((await ask(broken.ctx, "api.test")).rcode, "SERVFAIL");
  const failing = context({ addElements: async () => Promise.reject(new Error("nft: set full")) });
  assert.deepEqual(await ask(failing.ctx, "api.test"), { rcode: "SERVFAIL", answers: [] });
});

test("blocked, duplicate and non-IPv4 addresses are dropped from answers and sets; at most 16 addresses", async () => {
  const many = Array.from({ length: 30 }, (_, i) => ({ address: `10.250.1.${i + 1}`, ttl: 5 }));
  const { ctx, added } = context({
    records: { "api.test": [{ address: "127.0.0.1", ttl: 60 }, { address: "169.254.169.254", ttl: 60 }, { address: "10.213.0.6", ttl: 60 }, { address: "fd00::1", ttl: 60 }, ...many, ...many] },
  });
  const { answers } = await ask(ctx, "api.test");
  assert.equal(answers.length, 16);
  assert.ok(answers.every(([a, ttl]) => String(a).startsWith("10.250.1.") && ttl === 5));
  assert.equal(added[0]!.length, 16 * 3);
  assert.ok(added[0]!.every((e) => e.timeoutS === 30), "short TTLs are floored");
});

test("allow-all resolves any name and opens nothing (everything is open already)", async () => {
  const { ctx, added, denied } = context({ allowAll: () => true, records: { "anything.example": [{ address: "10.250.0.7", ttl: 10 }] } });
  assert.deepEqual(await ask(ctx, "anything.example"), { rcode: "NOERROR", answers: [["10.250.0.7", 10]] });
  assert.deepEqual(added, []);
  assert.deepEqual(denied, []);
});

test("malformed input is answered FORMERR or ignored, never passed to the resolver", async () => {
  const { ctx, asked } = context();
  assert.equal(await respond(ctx, Buffer.from([1, 2, 3]), 512), null);
  const bad = Buffer.from(dnsPacket.encode({ type: "query", id: 5, questions: [{ type: "A", name: "api.test" }] }));
  bad.writeUInt16BE(2, 4);
  const reply = await respond(ctx, bad, 512);
  assert.equal((dnsPacket.decode(reply!) as { rcode?: string }).rcode, "FORMERR");
  const chaos = Buffer.from(dnsPacket.encode({ type: "query", id: 5, questions: [{ type: "TXT", name: "version.bind", class: "CH" }] }));
  assert.equal((dnsPacket.decode((await respond(ctx, chaos, 512))!) as { rcode?: string }).rcode, "REFUSED");
  assert.deepEqual(asked, []);
});

test("TTL plan: the element lives at least the floor and at most the cap; the answer expires before the element", () => {
  assert.deepEqual(ttlPlan(0, 30, 3600), { elementTimeoutS: 30, answerTtlS: 0 });
  assert.deepEqual(ttlPlan(5, 30, 3600), { elementTimeoutS: 30, answerTtlS: 5 });
  assert.deepEqual(ttlPlan(30, 30, 3600), { elementTimeoutS: 30, answerTtlS: 20 });
  assert.deepEqual(ttlPlan(300, 30, 3600), { elementTimeoutS: 300, answerTtlS: 290 });
  assert.deepEqual(ttlPlan(86400, 30, 3600), { elementTimeoutS: 3600, answerTtlS: 3590 });
  assert.deepEqual(ttlPlan(Number.NaN, 30, 3600), { elementTimeoutS: 30, answerTtlS: 0 });
});
