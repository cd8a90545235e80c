// Anti-spoofing and IPv6 with real netns, veth and nftables. Run as root.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { netWorld } from "./world.ts";

/** Connections the host's conntrack holds with `source` as the original source. */
function trackedFrom(source: string): string[] {
  return readFileSync("/proc/net/nf_conntrack", "utf8")
    .split("\n")
    .filter((l) => l.includes(` src=${source} `));
}

test("a packet with a source address other than the sandbox's is dropped at its veth and reported", async (t) => {
  const w = await netWorld(t);
  const a = await w.sandbox({ allow: [{ host: "api.test", ports: [8080] }] });
  const b = await w.sandbox({ allow: [{ host: "api.test", ports: [8080] }] });
  await a.resolve("api.test");
  assert.equal(await a.connect(w.upstream, 8080), "connected", "the real address works");
  // the test (host root) adds addresses inside A's netns: a free pool address, and B's own address
  const free = w.pool.replace(/0\/24$/, "99");
  execFileSync("ip", ["-n", `${w.prefix}${a.id}`, "addr", "add", `${free}/32`, "dev", "eth0"]);
  execFileSync("ip", ["-n", `${w.prefix}${a.id}`, "addr", "add", `${b.network.sandboxAddress}/32`, "dev", "eth0"]);
  // two layers: strict reverse-path filtering on the host end, and the nft rule; each must hold on its own
  const rpFilter = `/proc/sys/net/ipv4/conf/${a.network.hostInterface}/rp_filter`;
  assert.equal(readFileSync(rpFilter, "utf8").trim(), "1");
  writeFileSync(rpFilter, "0");
  assert.equal(readFileSync("/proc/sys/net/ipv4/conf/all/rp_filter", "utf8").trim(), "0", "this test needs the host's all.rp_filter off to see the nft layer alone");
  for (const source of [free, b.network.sandboxAddress]) {
    // silence, not a reset: a spoofed source gets no answer at all
    assert.equal(await a.connect(w.upstream, 8080, { localAddress: source, timeoutMs: 1000 }), "timeout", `from ${source}`);
    // dropped before conntrack: the host never tracked, routed or NATed it
    assert.deepEqual(trackedFrom(source), [], `conntrack entries from ${source}`);
    const e = await w.waitForEvent((e) => e.type === "connection_blocked" && e.source === source);
    assert.deepEqual({ ...e, at: undefined }, {
      type: "connection_blocked",
      sandboxId: a.id,
      destination: w.upstream,
      port: 8080,
      protocol: "tcp",
      reason: "host_not_allowed",
      target: "spoofed_source",
      source,
      at: undefined,
    });
  }
  writeFileSync(rpFilter, "1");
  const third = w.pool.replace(/0\/24$/, "98");
  execFileSync("ip", ["-n", `${w.prefix}${a.id}`, "addr", "add", `${third}/32`, "dev", "eth0"]);
  assert.equal(await a.connect(w.upstream, 8080, { localAddress: third, timeoutMs: 1000 }), "timeout", "with both layers");
  // B's DNS server does not answer a query posing as B from A's veth either
  const posing = await a.probe<{ error?: string }>({ op: "dns", server: b.network.hostAddress, name: "api.test", timeoutMs: 800 });
  assert.ok(posing.error, JSON.stringify(posing));
});

test("IPv6 is unavailable: no address, no route, disabled in the netns and on the host end", async (t) => {
  const w = await netWorld(t);
  const sb = await w.sandbox({ allowAll: true });
  const v6 = await sb.probe<{ v6: string[]; disabled: string; connect: string; loopback6: string }>({ op: "ipv6" });
  assert.deepEqual(v6.v6, []);
  assert.equal(v6.disabled, "1");
  assert.notEqual(v6.connect, "connected");
  assert.notEqual(v6.loopback6, "connected");
  assert.equal(readFileSync(`/proc/sys/net/ipv6/conf/${sb.network.hostInterface}/disable_ipv6`, "utf8").trim(), "1");
  assert.equal(execFileSync("ip", ["-6", "addr", "show", "dev", sb.network.hostInterface], { encoding: "utf8" }).trim(), "");
  assert.equal(readFileSync(`/proc/sys/net/ipv4/conf/${sb.network.hostInterface}/rp_filter`, "utf8").trim(), "1");
});
