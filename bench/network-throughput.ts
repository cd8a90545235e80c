// TCP throughput of the sandbox network path against a plain one, in the same run:
//   cleanroom: sandbox netns → veth → host (forward, nft allow set, conntrack, masquerade) → veth → upstream netns
//   baseline:  netns → veth → netns, no host hop and no rules
// The same node sender and sink on both paths; runs alternate; medians and their ratio are printed (target ≥ 90 %).
// A node sender tops out near 9 Gbit/s here, so when iperf3 is installed (Debian package iperf3) it is measured too:
// it pushes the kernel path harder and shows the rules' cost more honestly.
// Bounded: BENCH_BYTES per node run (default 1 GiB), each run cut at BENCH_RUN_SECONDS (default 10; iperf3: 3 s).
// Run as root: node bench/network-throughput.ts
import { spawn, execFileSync } from "node:child_process";
import { connect } from "node:net";
import { createInterface } from "node:readline";
import type { TestContext } from "node:test";
import { netWorld, sinkPort } from "../test/network/world.ts";

const bytesPerRun = Number(process.env.BENCH_BYTES ?? 1024 * 1024 * 1024);
const runSeconds = Number(process.env.BENCH_RUN_SECONDS ?? 10);
const runs = Number(process.env.BENCH_RUNS ?? 5);
const chunk = 256 * 1024;
const iperfPort = 5201;

/** Sender mode (inside a netns): writes `bytes` to host:port, waits for the sink's count, prints JSON. */
async function send(host: string, port: number, bytes: number, limitMs: number): Promise<void> {
  const buf = Buffer.alloc(chunk, 0x61);
  const s = connect({ host, port });
  await new Promise<void>((resolve, reject) => s.once("connect", resolve).once("error", reject));
  const started = performance.now();
  let sent = 0;
  while (sent < bytes && performance.now() - started < limitMs) {
    const n = Math.min(chunk, bytes - sent);
    if (!s.write(n === chunk ? buf : buf.subarray(0, n))) await new Promise((r) => s.once("drain", r));
    sent += n;
  }
  s.end();
  const counted = await new Promise<number>((resolve) => {
    let text = "";
    s.on("data", (d: Buffer) => (text += d.toString()));
    s.on("end", () => resolve(Number(text.trim())));
  });
  const ms = performance.now() - started;
  process.stdout.write(JSON.stringify({ sent, counted, ms }) + "\n");
}

function sendFrom(ns: string, host: string, port: number): Promise<{ sent: number; counted: number; ms: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn("ip", ["netns", "exec", ns, process.execPath, import.meta.filename, "--send", host, String(port), String(bytesPerRun), String(runSeconds * 1000)], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), (runSeconds + 20) * 1000);
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.on("exit", (code) => {
      clearTimeout(timer);
      if (code !== 0) reject(new Error(`sender in ${ns} exited ${code}`));
      else resolve(JSON.parse(out) as { sent: number; counted: number; ms: number });
    });
  });
}

/** iperf3 client in `ns` against a server started in `serverNs` at `host`; bits per second received. */
async function iperf(ns: string, serverNs: string, host: string): Promise<number> {
  const server = spawn("ip", ["netns", "exec", serverNs, "iperf3", "-s", "-1", "-B", host, "-p", String(iperfPort)], { stdio: "ignore" });
  try {
    await new Promise((r) => setTimeout(r, 300));
    const out = execFileSync("ip", ["netns", "exec", ns, "iperf3", "-c", host, "-p", String(iperfPort), "-t", String(Math.min(runSeconds, 3)), "-J"], {
      encoding: "utf8",
      timeout: (runSeconds + 20) * 1000,
    });
    return (JSON.parse(out) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second;
  } finally {
    server.kill("SIGKILL");
  }
}

function hasIperf(): boolean {
  try {
    execFileSync("iperf3", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function main(): Promise<void> {
  const cleanups: (() => unknown)[] = [];
  const cleanup = async () => {
    while (cleanups.length) await Promise.resolve(cleanups.pop()!()).catch((err: unknown) => console.error("cleanup:", err));
  };
  process.once("SIGINT", () => void cleanup().then(() => process.exit(130)));
  try {
    const t = { after: (fn: () => unknown) => cleanups.push(fn) } as unknown as TestContext;
    const w = await netWorld(t, { disableDropLog: true });
    const sb = await w.sandbox({ allow: [{ host: w.upstream, ports: [sinkPort, iperfPort] }] });

    // the baseline: two namespaces on one veth pair, nothing in between
    const [a, b] = [`${w.prefix}plain-a`, `${w.prefix}plain-b`];
    const ip = (args: string[]) => execFileSync("ip", args, { stdio: "pipe" });
    cleanups.push(() => {
      for (const ns of [a, b]) {
        try {
          ip(["netns", "del", ns]);
        } catch {
          // gone
        }
      }
    });
    ip(["netns", "add", a]);
    ip(["netns", "add", b]);
    ip(["-n", a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", b]);
    ip(["-n", a, "addr", "add", "10.251.0.1/30", "dev", "eth0"]);
    ip(["-n", b, "addr", "add", "10.251.0.2/30", "dev", "eth0"]);
    for (const ns of [a, b]) for (const dev of ["lo", "eth0"]) ip(["-n", ns, "link", "set", dev, "up"]);
    const sink = spawn("ip", ["netns", "exec", b, process.execPath, new URL("../test/network/upstream-server.ts", import.meta.url).pathname, JSON.stringify({ address: "10.251.0.2", httpPorts: [], sinkPorts: [sinkPort] })], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    cleanups.push(() => sink.kill("SIGKILL"));
    await new Promise<void>((resolve) => createInterface({ input: sink.stdout }).on("line", (l) => l === "ready" && resolve()));

    const rate = (r: { counted: number; ms: number }) => (r.counted * 8) / (r.ms / 1000) / 1e9;
    const results = { cleanroom: [] as number[], baseline: [] as number[] };
    // one warm-up each, then alternate so drift hits both paths alike
    await sendFrom(`${w.prefix}${sb.id}`, w.upstream, sinkPort);
    await sendFrom(a, "10.251.0.2", sinkPort);
    for (let i = 0; i < runs; i++) {
      const c = await sendFrom(`${w.prefix}${sb.id}`, w.upstream, sinkPort);
      const p = await sendFrom(a, "10.251.0.2", sinkPort);
      if (c.counted !== c.sent || p.counted !== p.sent) throw new Error(`bytes lost: ${JSON.stringify({ c, p })}`);
      results.cleanroom.push(rate(c));
      results.baseline.push(rate(p));
      console.log(`run ${i + 1}: cleanroom ${rate(c).toFixed(2)} Gbit/s (${(c.counted / 2 ** 20).toFixed(0)} MiB), baseline ${rate(p).toFixed(2)} Gbit/s`);
    }
    const [mc, mb] = [median(results.cleanroom), median(results.baseline)];
    console.log(`node sender, median: cleanroom ${mc.toFixed(2)} Gbit/s, baseline ${mb.toFixed(2)} Gbit/s, ratio ${((mc / mb) * 100).toFixed(1)} % (target >= 90 %)`);
    if (hasIperf()) {
      const ip3 = { cleanroom: [] as number[], baseline: [] as number[] };
      for (let i = 0; i < runs; i++) {
        ip3.cleanroom.push((await iperf(`${w.prefix}${sb.id}`, w.upstreamNs, w.upstream)) / 1e9);
        ip3.baseline.push((await iperf(a, b, "10.251.0.2")) / 1e9);
        console.log(`iperf3 run ${i + 1}: cleanroom ${ip3.cleanroom.at(-1)!.toFixed(2)} Gbit/s, baseline ${ip3.baseline.at(-1)!.toFixed(2)} Gbit/s`);
      }
      const [ic, ib] = [median(ip3.cleanroom), median(ip3.baseline)];
      console.log(`iperf3, median: cleanroom ${ic.toFixed(2)} Gbit/s, baseline ${ib.toFixed(2)} Gbit/s, ratio ${((ic / ib) * 100).toFixed(1)} % (target >= 90 %)`);
    } else {
      console.log("iperf3 not installed: node sender only");
    }
  } finally {
    await cleanup();
  }
}

if (process.argv[2] === "--send") {
  await send(process.argv[3]!, Number(process.argv[4]), Number(process.argv[5]), Number(process.argv[6]));
} else {
  await main();
}
