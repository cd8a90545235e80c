// Throughput of a cached blob served by the gateway to a sandbox, against the same file served by a plain static
// server (node:http + a file stream) to the same sandbox, in the same run:
//   gateway:  sandbox → veth → host (input: the gateway on the sandbox's host address) → content store file
//   baseline: sandbox → veth → host (forward, nft allow set) → veth → static server in the upstream netns
// curl inside the sandbox downloads to /dev/null; runs alternate; medians and their ratio are printed (target ≥ 80 %).
// Bounded: BENCH_MIB (default 200) per download, BENCH_RUNS (default 5) pairs, each download cut at 60 s.
// Run as root after `npm run build`: node bench/gateway-blob.ts
import { randomBytes } from "node:crypto";
import { closeSync, openSync, writeSync } from "node:fs";
import { join } from "node:path";
import { unwind } from "../test/fixtures/cleanup.ts";
import { runCli } from "../test/fixtures/daemon.ts";
import { startGatewayWorld } from "../test/fixtures/gateway-world.ts";

const mib = Number(process.env.BENCH_MIB ?? 200);
const runs = Number(process.env.BENCH_RUNS ?? 5);
const httpPort = 8081;

const cleanups: (() => unknown)[] = [];
// interrupted (Ctrl-C, a closed pipe): the daemon, sandboxes, netns and nft table are still removed
for (const signal of ["SIGINT", "SIGTERM", "SIGPIPE"] as const) {
  process.once(signal, () => void unwind(cleanups, "benchmark cleanup failed").finally(() => process.exit(130)));
}
try {
  const world = await startGatewayWorld({ after: (fn) => void cleanups.push(fn) }, { hosts: ["files.test"], gitHosts: [], httpPort });
  writeBlob(join(world.root, "files.test", "blob.bin"), mib);
  const created = await runCli(["create"], world.daemon.env, undefined, 60_000, world.repository(["files.test:443", `files.test:${httpPort}`]));
  if (created.code !== 0) throw new Error(created.stderr);
  const id = created.stdout.trim();
  const download = async (url: string): Promise<number> => {
    const res = await world.daemon.cli(["exec", "--in", id, "--", "sh", "-c", `curl -fsS --max-time 60 -o /dev/null -w '%{size_download} %{time_total}' ${url}`]);
    const [bytes, seconds] = res.stdout.trim().split(" ").map(Number);
    if (res.code !== 0 || bytes !== mib * 1024 * 1024) throw new Error(`download of ${url} failed: ${res.stderr}`);
    return bytes / seconds! / 1024 / 1024;
  };
  const gatewayUrl = "$CLEANROOM_GATEWAY_URL/fetch/files.test/blob.bin";
  const baselineUrl = `http://files.test:${httpPort}/blob.bin`;
  await download(gatewayUrl); // fills the gateway's cache; every measured run is a hit
  const gateway: number[] = [];
  const baseline: number[] = [];
  for (let i = 0; i < runs; i++) {
    baseline.push(await download(baselineUrl));
    gateway.push(await download(gatewayUrl));
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const g = median(gateway);
  const b = median(baseline);
  console.log(`blob: ${mib} MiB, ${runs} runs each (MiB/s)`);
  console.log(`  plain static server: median ${b.toFixed(0)}  runs ${baseline.map((x) => x.toFixed(0)).join(" ")}`);
  console.log(`  gateway (cache hit): median ${g.toFixed(0)}  runs ${gateway.map((x) => x.toFixed(0)).join(" ")}`);
  console.log(`  ratio gateway/baseline: ${((g / b) * 100).toFixed(0)} % (target ≥ 80 %)`);
  await world.daemon.cli(["sandbox", "rm", id]);
} finally {
  await unwind(cleanups, "benchmark cleanup failed");
}

function writeBlob(path: string, sizeMiB: number): void {
  const fd = openSync(path, "w");
  try {
    const chunk = randomBytes(1024 * 1024);
    for (let i = 0; i < sizeMiB; i++) writeSync(fd, chunk);
  } finally {
    closeSync(fd);
  }
}
