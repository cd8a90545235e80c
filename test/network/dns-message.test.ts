// The DNS policy server's wire format on hostile input. Pure: no sockets.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import dnsPacket from "dns-packet";
import { encodeAnswer, encodeEmpty, maxUdpAnswerBytes, parseQuery, rcodes } from "../../src/network/dns-message.ts";

const query = (name: string, type: "A" | "AAAA" = "A", id = 4242) =>
  dnsPacket.encode({ type: "query", id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name }] });

/** a raw query: header fields, then the given question bytes */
function raw(header: { flags?: number; qd?: number; an?: number; ns?: number; ar?: number }, body: number[]): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt16BE(7, 0);
  h.writeUInt16BE(header.flags ?? 0x0100, 2);
  h.writeUInt16BE(header.qd ?? 1, 4);
  h.writeUInt16BE(header.an ?? 0, 6);
  h.writeUInt16BE(header.ns ?? 0, 8);
  h.writeUInt16BE(header.ar ?? 0, 10);
  return Buffer.concat([h, Buffer.from(body)]);
}
const labels = (...ls: string[]) => [...ls.flatMap((l) => [l.length, ...Buffer.from(l)]), 0];

test("a query parses to its id, lowercased name and type, keeping the question bytes as sent (0x20 case survives)", () => {
  const parsed = parseQuery(query("ApI.TeSt", "AAAA"));
  assert.equal(parsed.kind, "query");
  if (parsed.kind !== "query") return;
  assert.equal(parsed.query.id, 4242);
  assert.equal(parsed.query.name, "api.test");
  assert.equal(parsed.query.isHostname, true);
  assert.equal(parsed.query.qtype, 28);
  assert.equal(parsed.query.qclass, 1);
  assert.equal(parsed.query.recursionDesired, true);
  const answer = dnsPacket.decode(encodeAnswer(parsed.query, rcodes.NOERROR, [{ address: "10.250.0.2", ttl: 50 }]));
  assert.equal(answer.questions?.[0]?.name, "ApI.TeSt");
  assert.equal(answer.id, 4242);
  assert.deepEqual(answer.answers?.map((a) => [a.name, a.type, "data" in a ? a.data : "", "ttl" in a ? a.ttl : -1]), [["ApI.TeSt", "A", "10.250.0.2", 50]]);
  assert.equal((answer as { rcode?: string }).rcode, "NOERROR");
  assert.ok((answer.flags ?? 0) & dnsPacket.RECURSION_AVAILABLE);
});

test("malformed queries get FORMERR/NOTIMP or no answer at all, never an exception", () => {
  const cases: [string, Buffer, string][] = [
    ["empty", Buffer.alloc(0), "drop"],
    ["shorter than a header", Buffer.alloc(11), "drop"],
    ["a response", raw({ flags: 0x8100 }, labels("a", "test").concat([0, 1, 0, 1])), "drop"],
    ["longer than 4 KiB", Buffer.concat([query("api.test"), Buffer.alloc(5000)]), "drop"],
    ["opcode STATUS", raw({ flags: 0x1100 }, labels("a").concat([0, 1, 0, 1])), "NOTIMP"],
    ["no question", raw({ qd: 0 }, []), "FORMERR"],
    ["two questions", raw({ qd: 2 }, [...labels("a"), 0, 1, 0, 1, ...labels("b"), 0, 1, 0, 1]), "FORMERR"],
    ["65535 questions", raw({ qd: 65535 }, labels("a").concat([0, 1, 0, 1])), "FORMERR"],
    ["answers in a query", raw({ an: 1 }, labels("a").concat([0, 1, 0, 1])), "FORMERR"],
    ["compression pointer to itself", raw({}, [0xc0, 12, 0, 1, 0, 1]), "FORMERR"],
    ["pointer loop after a label", raw({}, [1, 97, 0xc0, 12, 0, 1, 0, 1]), "FORMERR"],
    ["extended label type", raw({}, [0x41, 0, 0, 1, 0, 1]), "FORMERR"],
    ["label past the end", raw({}, [63, 97, 98]), "FORMERR"],
    ["unterminated name", raw({}, [3, 97, 98, 99]), "FORMERR"],
    ["name over 255 bytes", raw({}, [...Array.from({ length: 5 }, () => [63, ...Buffer.alloc(63, 97)]).flat(), 0, 0, 1, 0, 1]), "FORMERR"],
    ["question without type", raw({}, labels("a", "test")), "FORMERR"],
  ];
  for (const [what, msg, expected] of cases) {
    const parsed = parseQuery(msg);
    const got = parsed.kind === "error" ? Object.entries(rcodes).find(([, v]) => v === parsed.rcode)?.[0] : parsed.kind;
    assert.equal(got, expected, what);
    if (parsed.kind === "error") {
      const reply = dnsPacket.decode(encodeEmpty(parsed.id, parsed.recursionDesired, parsed.rcode, parsed.question));
      assert.equal((reply as { rcode?: string }).rcode, expected, `${what}: reply`);
      assert.equal(reply.id, 7);
    }
  }
});

test("odd bytes in a name make it a non-hostname, escaped for display; it can never equal an allowlisted host", () => {
  const parsed = parseQuery(raw({}, [...labels("api.test"), 0, 1, 0, 1]));
  assert.equal(parsed.kind, "query");
  if (parsed.kind !== "query") return;
  assert.equal(parsed.query.name, "api\\046test", "a dot inside one label is not two labels");
  assert.equal(parsed.query.isHostname, false);
  const binary = parseQuery(raw({}, [3, 0, 10, 255, 0, 0, 1, 0, 1]));
  assert.ok(binary.kind === "query" && binary.query.name === "\\000\\010\\255" && !binary.query.isHostname);
});

test("answers never exceed the UDP limit, whatever the question's length", () => {
  const long = Array.from({ length: 4 }, () => "a".repeat(60)).join(".");
  const parsed = parseQuery(query(long));
  assert.equal(parsed.kind, "query");
  if (parsed.kind !== "query") return;
  const many = Array.from({ length: 40 }, (_, i) => ({ address: `10.250.0.${i + 1}`, ttl: 30 }));
  const encoded = encodeAnswer(parsed.query, rcodes.NOERROR, many);
  assert.ok(encoded.length <= maxUdpAnswerBytes, `${encoded.length} bytes`);
  const decoded = dnsPacket.decode(encoded);
  assert.ok((decoded.answers?.length ?? 0) > 0 && (decoded.answers?.length ?? 0) < 40);
});

test("random bytes never make the parser throw", () => {
  for (let i = 0; i < 20_000; i++) {
    const len = Math.floor(Math.random() * 80);
    const msg = randomBytes(len);
    if (len > 2 && i % 2) msg[2] = msg[2]! & 0x07; // half of them look like queries with opcode 0
    if (len > 5 && i % 4 === 1) (msg[4] = 0), (msg[5] = 1), (msg[6] = 0), (msg[7] = 0), (msg[8] = 0), (msg[9] = 0);
    const parsed = parseQuery(msg);
    assert.ok(["query", "error", "drop"].includes(parsed.kind));
  }
});
