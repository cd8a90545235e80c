/** Parses kernel log records of packets our rules dropped. Pure. */
import { isIpv4 } from "./ipv4.ts";
import type { DropKind } from "./names.ts";

/** A record of /dev/kmsg, e.g. `4,1234,5678901,-;cleanroom egress abc123def456: IN=… SRC=… DST=…`. */
export interface KmsgRecord {
  facility: number;
  level: number;
  seq: number;
  timestampUs: number;
  message: string;
}

export interface DroppedPacket {
  kind: DropKind;
  sandboxId: string;
  inInterface: string;
  source: string;
  destination: string;
  /** "tcp", "udp", "icmp" or the kernel's protocol number/name lowercased */
  protocol: string;
  sourcePort: number | null;
  destinationPort: number | null;
}

/** Longest record we look at; a kernel log line is at most ~1 KiB, anything larger is not ours. */
export const maxRecordBytes = 4096;

/** Splits a raw /dev/kmsg record; null for anything malformed. Continuation lines (" KEY=value") are dropped. */
export function parseKmsgRecord(raw: string): KmsgRecord | null {
  if (raw.length > maxRecordBytes) return null;
  const semi = raw.indexOf(";");
  if (semi < 0) return null;
  const [prio, seq, ts] = raw.slice(0, semi).split(",");
  if (!prio || !seq || !ts || !/^\d+$/.test(prio) || !/^\d+$/.test(seq) || !/^\d+$/.test(ts)) return null;
  const p = Number(prio);
  const message = raw.slice(semi + 1).split("\n", 1)[0] ?? "";
  return { facility: p >> 3, level: p & 7, seq: Number(seq), timestampUs: Number(ts), message };
}

const prefixPattern = /^cleanroom (egress|host|spoof) ([a-z0-9]{12}): (.*)$/;

/**
 * The dropped packet of one of our log lines, or null. Only kernel-facility records count: a userspace
 * write to /dev/kmsg (root only, never from a sandbox) cannot pose as one.
 */
export function parseDropRecord(record: KmsgRecord): DroppedPacket | null {
  if (record.facility !== 0) return null;
  const m = prefixPattern.exec(record.message);
  if (!m) return null;
  const fields = fieldsOf(m[3] ?? "");
  const source = fields.get("SRC");
  const destination = fields.get("DST");
  if (!source || !destination || !isIpv4(source) || !isIpv4(destination)) return null;
  const proto = (fields.get("PROTO") ?? "").toLowerCase();
  return {
    kind: m[1] as DropKind,
    sandboxId: m[2] ?? "",
    inInterface: fields.get("IN") ?? "",
    source,
    destination,
    protocol: /^[a-z0-9]{1,16}$/.test(proto) ? proto : "unknown",
    sourcePort: port(fields.get("SPT")),
    destinationPort: port(fields.get("DPT")),
  };
}

/** KEY=value tokens of the packet itself; an ICMP error's quoted packet ("[SRC=… ]") is not read. */
function fieldsOf(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const token of text.split(" ")) {
    if (token.startsWith("[")) break;
    const eq = token.indexOf("=");
    if (eq <= 0) continue;
    const key = token.slice(0, eq);
    if (!out.has(key)) out.set(key, token.slice(eq + 1));
  }
  return out;
}

function port(text: string | undefined): number | null {
  if (text === undefined || !/^\d{1,5}$/.test(text)) return null;
  const n = Number(text);
  return n <= 65535 ? n : null;
}
