// HTTP requests per second through exposure, against the baseline measured in the same run: the same load
// generator (bench/http-load.ts, keep-alive, BENCH_CONCURRENCY requests in flight for BENCH_SECONDS) run inside the
// sandbox against its own dev server on 127.0.0.1:3000. The exposed paths run it on the host against
// https://bench.cleanroom.localhost:<port> (`cleanroom expose --expose-https`: TLS, HTTP proxying, pooled port
// dials) and against the raw TCP forward of the same `expose` process. Medians of BENCH_ROUNDS interleaved rounds.
// Run as root: `npm run bench:expose`.
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { cliPath, repoRoot, startTestDaemon } from "../test/fixtures/daemon.ts";
import { ensureNodeImage } from "../test/fixtures/node-image.ts";
import { freePort } from "../test/fixtures/ports.ts";
import { startRunningCli } from "../test/fixtures/running-cli.ts";

const run = promisify(execFile);
const CONCURRENCY = Math.min(Math.max(Number(process.env.BENCH_CONCURRENCY ?? 8), 1), 64);
const SECONDS = Math.min(Math.max(Number(process.env.BENCH_SECONDS ?? 5), 1), 60);
const ROUNDS = Math.min(Math.max(Number(process.env.BENCH_ROUNDS ?? 3), 1), 10);
const cleanups: (() => unknown)[] = [];

interface LoadResult {
  requests: number;
  errors: number;
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const daemon = await startTestDaemon({ after: (fn: () => unknown) => void cleanups.push(fn) });
  const image = await ensureNodeImage(daemon);
  const sandbox = await daemon.client.createSandbox({ image });
  cleanups.push(() => sandbox.terminate().catch(() => undefined));
  const id = sandbox.id;
  const cli = (args: string[]) => run(cliPath, args, { env: daemon.env });
  await sandbox.exec(["mkdir", "-p", "/srv"]);
  await cli(["cp", join(repoRoot, "test", "fixtures", "exposure-app", "server.cjs"), `${id}:/srv/server.cjs`]);
  await cli(["cp", join(repoRoot, "bench", "http-load.ts"), `${id}:/srv/http-load.ts`]);
  await sandbox.exec(["sh", "-c", "setsid -f node /srv/server.cjs 3000 bench >/tmp/server.log 2>&1"]);
  for (let i = 0; i < 50 && (await sandbox.exec(["curl", "-sf", "-o", "/dev/null", "http://127.0.0.1:3000/"])).exitCode !== 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }

  const caDir = mkdtempSync(join(tmpdir(), "cleanroom-bench-ca-"));
  cleanups.push(() => rmSync(caDir, { recursive: true, force: true }));
  const tcpPort = await freePort();
  const httpsUrl = /https:\/\/bench\.cleanroom\.localhost:(\d+)\//;
  const expose = await startRunningCli({ after: (fn) => void cleanups.push(fn) }, ["expose", "--in", id, "--expose-https", "bench:3000", "--expose", `${tcpPort}:3000`], httpsUrl, {
    env: { ...daemon.env, CLEANROOM_EXPOSURE_DIR: caDir },
  });
  const httpsPort = Number(httpsUrl.exec(expose.stderr())![1]);

  const durationMs = String(SECONDS * 1000);
  const hostLoad = async (url: string, extra: string[] = []) =>
    JSON.parse((await run(process.execPath, [join(repoRoot, "bench", "http-load.ts"), url, String(CONCURRENCY), durationMs, ...extra])).stdout) as LoadResult;
  const paths: { name: string; load: () => Promise<LoadResult> }[] = [
    { name: "direct, inside the sandbox (baseline)", load: async () => JSON.parse((await sandbox.exec(["node", "/srv/http-load.ts", "http://127.0.0.1:3000/", String(CONCURRENCY), durationMs])).stdout.toString()) as LoadResult },
    { name: "raw TCP forward (--expose)", load: () => hostLoad(`http://127.0.0.1:${tcpPort}/`) },
    { name: "HTTPS exposure (--expose-https)", load: () => hostLoad(`https://bench.cleanroom.localhost:${httpsPort}/`, [join(caDir, "ca", "cert.pem"), `127.0.0.1:${httpsPort}`]) },
  ];
  const results = new Map<string, LoadResult[]>(paths.map((p) => [p.name, []]));
  for (const path of paths) await path.load(); // warm-up: pools, JIT, certificates
  for (let round = 0; round < ROUNDS; round++) {
    for (const path of paths) results.get(path.name)!.push(await path.load());
  }

  const baseline = median(results.get(paths[0]!.name)!.map((r) => r.requestsPerSecond));
  console.log(`HTTP GET of a small JSON answer from a Node server in the sandbox: ${CONCURRENCY} requests in flight, ${SECONDS} s, median of ${ROUNDS} rounds`);
  console.log("");
  console.log("| path | requests/s | p50 ms | p99 ms | errors | vs direct |");
  console.log("|---|---|---|---|---|---|");
  for (const path of paths) {
    const rs = results.get(path.name)!;
    const rps = median(rs.map((r) => r.requestsPerSecond));
    const errors = rs.reduce((sum, r) => sum + r.errors, 0);
    console.log(`| ${path.name} | ${rps.toFixed(0)} | ${median(rs.map((r) => r.p50Ms)).toFixed(2)} | ${median(rs.map((r) => r.p99Ms)).toFixed(2)} | ${errors} | ${(rps / baseline).toFixed(2)}x |`);
  }
}

try {
  await main();
} finally {
  for (const fn of cleanups.reverse()) await fn();
}
