/**
 * DNS wire format for the policy server: a strict parser for queries (attacker-controlled: they come from
 * inside a sandbox) and an encoder for our answers. Pure. Queries are parsed by hand, not by a general
 * decoder: a query has exactly one question, no compression and nothing we need past the question, so
 * anything else is refused before it can cost more than a bounds check.
 */

export const rcodes = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
export type Rcode = (typeof rcodes)[keyof typeof rcodes];

export const qtypes = { A: 1, CNAME: 5, SOA: 6, PTR: 12, MX: 15, TXT: 16, AAAA: 28, SRV: 33, SVCB: 64, HTTPS: 65, ANY: 255 } as const;
const qtypeNames = new Map<number, string>(Object.entries(qtypes).map(([k, v]) => [v, k]));
const classIn = 1;

/** Largest query we read (UDP or TCP); a legitimate one is ~300 bytes even with EDNS options. */
export const maxQueryBytes = 4096;
/** Classic UDP limit: we do not speak EDNS, so every UDP answer fits here. */
export const maxUdpAnswerBytes = 512;

export interface DnsQuery {
  id: number;
  recursionDesired: boolean;
  /** lowercased, dot-separated, no trailing dot; escaped (\DDD) where a byte is not printable */
  name: string;
  /** every label is [a-z0-9_-]: only such a name can equal an allowlisted host */
  isHostname: boolean;
  qtype: number;
  qclass: number;
  /** the question section exactly as received (0x20 case randomization survives), echoed in the answer */
  question: Buffer;
}

export type ParsedQuery =
  | { kind: "query"; query: DnsQuery }
  /** answer with this rcode (the question echoed when it parsed) */
  | { kind: "error"; id: number; recursionDesired: boolean; rcode: Rcode; question?: Buffer; why: string }
  /** no answer at all: not a query, or too broken to reply to */
  | { kind: "drop"; why: string };

/** Parses one query message (without the TCP length prefix). */
export function parseQuery(msg: Uint8Array): ParsedQuery {
  if (msg.length < 12) return { kind: "drop", why: "shorter than a header" };
  if (msg.length > maxQueryBytes) return { kind: "drop", why: `longer than ${maxQueryBytes} bytes` };
  const buf = Buffer.from(msg.buffer, msg.byteOffset, msg.length);
  const id = buf.readUInt16BE(0);
  const flags = buf.readUInt16BE(2);
  // a response is never answered: two servers must not be able to bounce packets between them
  if (flags & 0x8000) return { kind: "drop", why: "a response, not a query" };
  const recursionDesired = (flags & 0x0100) !== 0;
  const fail = (rcode: Rcode, why: string, question?: Buffer): ParsedQuery => ({ kind: "error", id, recursionDesired, rcode, why, ...(question ? { question } : {}) });
  if (((flags >> 11) & 0xf) !== 0) return fail(rcodes.NOTIMP, "opcode is not QUERY");
  const [qd, an, ns] = [buf.readUInt16BE(4), buf.readUInt16BE(6), buf.readUInt16BE(8)];
  if (qd !== 1) return fail(rcodes.FORMERR, `${qd} questions`);
  if (an !== 0 || ns !== 0) return fail(rcodes.FORMERR, "answer or authority records in a query");
  const name = readQuestionName(buf, 12);
  if (typeof name === "string") return fail(rcodes.FORMERR, name);
  if (name.end + 4 > buf.length) return fail(rcodes.FORMERR, "question truncated");
  const question = Buffer.from(buf.subarray(12, name.end + 4));
  return {
    kind: "query",
    query: {
      id,
      recursionDesired,
      name: name.text,
      isHostname: name.isHostname,
      qtype: buf.readUInt16BE(name.end),
      qclass: buf.readUInt16BE(name.end + 2),
      question,
    },
  };
}

/** The uncompressed name at `offset`, or a reason it is malformed. */
function readQuestionName(buf: Buffer, offset: number): { text: string; isHostname: boolean; end: number } | string {
  const labels: string[] = [];
  let isHostname = true;
  let pos = offset;
  for (;;) {
    if (pos >= buf.length) return "name runs past the message";
    const len = buf[pos]!;
    if (len === 0) break;
    // 0xC0 would be a compression pointer: nothing precedes the question for it to point to, so it is
    // refused outright (and with it every pointer loop); 0x40/0x80 are obsolete label types
    if (len & 0xc0) return "compression or extended label type in the question";
    if (pos + 1 + len > buf.length) return "label runs past the message";
    if (pos + 1 + len - offset + 1 > 255) return "name longer than 255 bytes";
    const label = buf.subarray(pos + 1, pos + 1 + len);
    const text = labelText(label);
    if (!/^[a-z0-9_-]+$/.test(text)) isHostname = false;
    labels.push(text);
    pos += 1 + len;
  }
  return { text: labels.join("."), isHostname, end: pos + 1 };
}

/** ASCII lowercased; anything outside printable ASCII, and "." or "\" inside a label, escaped as \DDD. */
function labelText(label: Uint8Array): string {
  let out = "";
  for (const b of label) {
    const c = b >= 0x41 && b <= 0x5a ? b + 0x20 : b;
    out += c > 0x20 && c < 0x7f && c !== 0x2e && c !== 0x5c ? String.fromCharCode(c) : "\\" + String(c).padStart(3, "0");
  }
  return out;
}

export function qtypeName(qtype: number): string {
  return qtypeNames.get(qtype) ?? `TYPE${qtype}`;
}

/** An answer to `query`: A records (already filtered) under the asked name, as many as fit in `maxBytes`. */
export function encodeAnswer(query: DnsQuery, rcode: Rcode, records: readonly { address: string; ttl: number }[], maxBytes = maxUdpAnswerBytes): Buffer {
  const fit = Math.max(0, Math.floor((maxBytes - 12 - query.question.length) / 16));
  const answers = records.slice(0, fit);
  const out = Buffer.alloc(12 + query.question.length + answers.length * 16);
  writeHeader(out, query.id, query.recursionDesired, rcode, 1, answers.length);
  query.question.copy(out, 12);
  let pos = 12 + query.question.length;
  for (const r of answers) {
    out.writeUInt16BE(0xc00c, pos); // pointer to the question's name at offset 12
    out.writeUInt16BE(qtypes.A, pos + 2);
    out.writeUInt16BE(classIn, pos + 4);
    out.writeUInt32BE(Math.max(0, Math.min(0x7fffffff, Math.floor(r.ttl))), pos + 6);
    out.writeUInt16BE(4, pos + 10);
    const octets = r.address.split(".").map(Number);
    if (octets.length !== 4 || octets.some((o) => !Number.isInteger(o) || o < 0 || o > 255)) throw new Error(`${r.address} is not an IPv4 address`);
    Buffer.from(octets).copy(out, pos + 12);
    pos += 16;
  }
  return out;
}

/** An answer without records: an error rcode, or NOERROR for "the name exists, not with this type". */
export function encodeEmpty(id: number, recursionDesired: boolean, rcode: Rcode, question?: Buffer): Buffer {
  const out = Buffer.alloc(12 + (question?.length ?? 0));
  writeHeader(out, id, recursionDesired, rcode, question ? 1 : 0, 0);
  question?.copy(out, 12);
  return out;
}

function writeHeader(out: Buffer, id: number, rd: boolean, rcode: Rcode, qd: number, an: number): void {
  out.writeUInt16BE(id, 0);
  // QR=1, opcode QUERY, RD echoed, RA=1: we recurse on the sandbox's behalf
  out.writeUInt16BE(0x8000 | (rd ? 0x0100 : 0) | 0x0080 | rcode, 2);
  out.writeUInt16BE(qd, 4);
  out.writeUInt16BE(an, 6);
  out.writeUInt16BE(0, 8);
  out.writeUInt16BE(0, 10);
}
