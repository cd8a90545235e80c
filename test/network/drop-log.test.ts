import { test } from "node:test";
import assert from "node:assert/strict";
import { parseDropRecord, parseKmsgRecord } from "../../src/network/drop-log.ts";
import { NetworkEventSink } from "../../src/network/network-events.ts";
import type { NetworkEvent } from "../../src/network/types.ts";

const line = (prio: number, msg: string) => `${prio},5123,3486775018,-;${msg}\n SUBSYSTEM=net\n`;
const egress =
  "cleanroom egress abc123def456: IN=cr-abc123def456 OUT=eth0 MAC=32:ea:34:f7:34:5d:e6:d4:01:8c:c2:2a:08:00 SRC=10.213.0.2 DST=10.250.0.2 LEN=60 TOS=0x00 PREC=0x00 TTL=63 ID=12164 DF PROTO=TCP SPT=54808 DPT=9090 WINDOW=64240 RES=0x00 SYN URGP=0 ";

test("a kernel log record of our prefix becomes a dropped packet", () => {
  const record = parseKmsgRecord(line(6, egress));
  assert.deepEqual(record && { ...record, message: record.message.slice(0, 16) }, { facility: 0, level: 6, seq: 5123, timestampUs: 3486775018, message: "cleanroom egress" });
  assert.deepEqual(parseDropRecord(record!), {
    kind: "egress",
    sandboxId: "abc123def456",
    inInterface: "cr-abc123def456",
    source: "10.213.0.2",
    destination: "10.250.0.2",
    protocol: "tcp",
    sourcePort: 54808,
    destinationPort: 9090,
  });
});

test("ICMP has no ports; the outer header wins over the one an ICMP error quotes", () => {
  const icmp = "cleanroom host abc123def456: IN=cr-abc123def456 OUT= SRC=10.213.0.2 DST=10.213.0.1 LEN=84 PROTO=ICMP TYPE=3 CODE=3 [SRC=10.213.0.1 DST=10.213.0.2 LEN=60 PROTO=UDP SPT=53 DPT=40000 ] ";
  const p = parseDropRecord(parseKmsgRecord(line(6, icmp))!);
  assert.deepEqual(p && [p.kind, p.source, p.destination, p.protocol, p.destinationPort], ["host", "10.213.0.2", "10.213.0.1", "icmp", null]);
});

test("records that are not ours, not from the kernel, or malformed are ignored", () => {
  assert.equal(parseDropRecord(parseKmsgRecord(line(14, egress))!), null, "facility user (a write to /dev/kmsg) cannot pose as the kernel");
  assert.equal(parseDropRecord(parseKmsgRecord(line(6, "cgroup: fork rejected by pids controller"))!), null);
  assert.equal(parseDropRecord(parseKmsgRecord(line(6, egress.replace("SRC=10.213.0.2", "SRC=evil")))!), null);
  assert.equal(parseDropRecord(parseKmsgRecord(line(6, egress.replace("abc123def456:", "ABC:")))!), null);
  for (const bad of ["", "no semicolon", "x,1,2,-;msg", "6,1;msg", "a".repeat(10_000)]) assert.equal(parseKmsgRecord(bad), null, bad.slice(0, 20));
  const odd = parseDropRecord(parseKmsgRecord(line(6, egress.replace("DPT=9090", "DPT=99999").replace("PROTO=TCP", "PROTO=<script>")))!);
  assert.deepEqual(odd && [odd.destinationPort, odd.protocol], [null, "unknown"]);
});

test("events: one per connection attempt (retransmitted SYNs are one), one per denied name per few seconds, bounded per sandbox", () => {
  const sink = new NetworkEventSink();
  const got: NetworkEvent[] = [];
  sink.events.on("event", (e) => got.push(e));
  const p = parseDropRecord(parseKmsgRecord(line(6, egress))!)!;
  sink.blocked(p, 1000);
  sink.blocked(p, 2000);
  sink.blocked({ ...p, sourcePort: 54810 }, 2000);
  assert.equal(got.length, 2);
  sink.dnsDenied("abc123def456", "other.test", "A", 1000);
  sink.dnsDenied("abc123def456", "other.test", "AAAA", 1100);
  sink.dnsDenied("abc123def456", "other.test", "A", 7000);
  assert.equal(got.filter((e) => e.type === "dns_query_denied").length, 2);
  for (let i = 0; i < 1000; i++) sink.dnsDenied("zzz123def456", `n${i}.test`, "A", 10_000);
  assert.equal(got.filter((e) => e.sandboxId === "zzz123def456").length, 100, "a burst of 100, then ~20/s");
  sink.events.on("event", () => {
    throw new Error("a listener that throws");
  });
  sink.dnsDenied("abc123def456", "another.test", "A", 20_000);
});
