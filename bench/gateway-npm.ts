// `npm install` of a 50-package tree (the real npm client, a fresh npm cache every run) through a warm gateway
// cache, against the same install straight from the registry, in the same run. The registry is a local HTTPS
// server serving real `npm pack` tarballs; it answers at once (BENCH_LATENCY_MS=0, default) or after a delay
// that stands in for a registry across the internet (e.g. BENCH_LATENCY_MS=30). Both paths run on this host's
// loopback, so the numbers compare the gateway's work with the registry's, not sandbox networking.
// Bounded: BENCH_RUNS (default 5) pairs of installs, each cut at 120 s. Run: node bench/gateway-npm.ts
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { unwind } from "../test/fixtures/cleanup.ts";
import { startTestGateway } from "../test/fixtures/gateway.ts";
import { testCertificates } from "../test/fixtures/tls.ts";
import { runNpm, startTestNpmRegistry, type TestPackage } from "../test/gateway/npm-registry.ts";

const runs = Number(process.env.BENCH_RUNS ?? 5);
const latencyMs = Number(process.env.BENCH_LATENCY_MS ?? 0);
const cleanups: (() => unknown)[] = [];
const defer = (fn: () => unknown) => void cleanups.push(fn);

/** 50 packages: 10 leaves, then 40 that each depend on two earlier ones. */
function tree(): TestPackage[] {
  const packages: TestPackage[] = [];
  for (let i = 0; i < 50; i++) {
    const deps = i < 10 ? {} : { [`bench-pkg-${(i * 7) % 10}`]: "^1.0.0", [`bench-pkg-${i - 1}`]: "^1.0.0" };
    packages.push({ name: `bench-pkg-${i}`, version: "1.0.0", dependencies: deps, main: `module.exports = ${i};\n` });
  }
  return packages;
}

try {
  // the registry is named by its address, so npm can reach it directly without a DNS name for it
  const certs = testCertificates(["127.0.0.1"]);
  defer(() => certs.remove());
  const registry = await startTestNpmRegistry(defer, { certs, host: "127.0.0.1", packages: tree(), latencyMs });
  const gw = await startTestGateway(defer, {
    rules: [{ host: "127.0.0.1", ports: [registry.port] }],
    settings: { upstreamCaFile: certs.caFile },
    publicHost: "127.0.0.1",
  });
  const work = mkdtempSync(join(tmpdir(), "cleanroom-bench-npm-"));
  defer(() => rmSync(work, { recursive: true, force: true }));
  let n = 0;
  const install = async (registryUrl: string, extra: string[] = []): Promise<number> => {
    const dir = join(work, `p${++n}`);
    const { writeFileSync, mkdirSync } = await import("node:fs");
    mkdirSync(dir);
    writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "bench", version: "1.0.0", dependencies: { "bench-pkg-49": "^1.0.0", "bench-pkg-48": "^1.0.0" } }));
    const started = performance.now();
    const res = await runNpm(["install", "--no-audit", "--no-fund", "--update-notifier=false", `--registry=${registryUrl}`, `--cache=${join(dir, ".cache")}`, ...extra], { cwd: dir, home: join(dir, "home"), timeoutMs: 120_000 });
    if (res.code !== 0) throw new Error(`npm install failed: ${res.stderr}`);
    return performance.now() - started;
  };
  const viaGateway = `${gw.base}/npm/${registry.authority}/`;
  const directUrl = `https://127.0.0.1:${registry.port}/`;
  const directArgs = [`--cafile=${certs.caFile}`];
  await install(viaGateway); // warms the gateway's cache
  const packages = new Set(registry.requests.map((r) => r.url)).size;
  const gateway: number[] = [];
  const upstream: number[] = [];
  for (let i = 0; i < runs; i++) {
    upstream.push(await install(directUrl, directArgs));
    gateway.push(await install(viaGateway));
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  console.log(`npm install, ${packages} distinct registry paths (packuments + tarballs), registry latency ${latencyMs} ms, ${runs} runs each (ms)`);
  console.log(`  registry directly:   median ${median(upstream).toFixed(0)}  runs ${upstream.map((x) => x.toFixed(0)).join(" ")}`);
  console.log(`  warm gateway cache:  median ${median(gateway).toFixed(0)}  runs ${gateway.map((x) => x.toFixed(0)).join(" ")}`);
  console.log(`  ratio gateway/direct: ${(median(gateway) / median(upstream)).toFixed(2)} (target < 1: faster)`);
} finally {
  await unwind(cleanups, "benchmark cleanup failed");
}
