// Isolation backends side by side: time to interactive (a new sandbox running `true`, through the CLI) and a workload
// set timed inside the sandbox, per backend, with the host itself as the baseline, all in one run. Workloads: sha256
// of 256 MiB (`head -c | sha256sum`), 500 fork+exec of /bin/true, BENCH_SMALL_FILES (default 200000) small file
// writes. Backends: linux, and gvisor when runsc is installed. Medians of BENCH_RUNS (default 3; TTI 5).
// Run as root: `npm run bench:backends`.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureBaseImage, startTestDaemon } from "../test/fixtures/daemon.ts";
import { missingRuntime } from "../test/fixtures/isolation.ts";

const RUNS = Math.min(Math.max(Number(process.env.BENCH_RUNS ?? 3), 1), 20);
const TTI_RUNS = Math.max(RUNS, 5);
const SMALL_FILES = Math.min(Math.max(Number(process.env.BENCH_SMALL_FILES ?? 200_000), 1000), 1_000_000);
const cleanups: (() => unknown)[] = [];
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Each prints the milliseconds it took, measured inside, so process start-up is not part of it. */
const timedInside = (script: string) => `s=$(date +%s%N); ${script}; e=$(date +%s%N); echo $(( (e - s) / 1000000 ))`;
const WORKLOADS: Record<string, (dir: string) => string> = {
  "sha256 of 256 MiB": () => timedInside("head -c 268435456 /dev/zero | sha256sum >/dev/null"),
  "500 fork+exec": () => timedInside("i=0; while [ $i -lt 500 ]; do /bin/true; i=$((i + 1)); done"),
  [`${SMALL_FILES} small file writes`]: (dir) => timedInside(`mkdir -p ${dir}/w && cd ${dir}/w && i=0; while [ $i -lt ${SMALL_FILES} ]; do echo x > f$i; i=$((i + 1)); done`),
};

async function main(): Promise<void> {
  const daemon = await startTestDaemon({ after: (fn: () => unknown) => void cleanups.push(fn) }, { env: { CLEANROOM_WARM_POOL: "0" } });
  await ensureBaseImage(daemon);
  const backends = (["linux", "gvisor"] as const).filter((b) => !missingRuntime(b));
  const results: Record<string, Record<string, number>> = { host: {} };

  // host baseline: the same scripts in a temp dir, and spawning `sh -c true` for TTI
  const hostDir = mkdtempSync(join(tmpdir(), "cleanroom-bench-backends-"));
  cleanups.push(() => rmSync(hostDir, { recursive: true, force: true }));
  const tti: number[] = [];
  for (let i = 0; i < TTI_RUNS; i++) {
    const start = performance.now();
    execFileSync("sh", ["-c", "true"]);
    tti.push(performance.now() - start);
  }
  results.host!.tti = median(tti);
  for (const [name, script] of Object.entries(WORKLOADS)) {
    const runs: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      rmSync(join(hostDir, "w"), { recursive: true, force: true });
      runs.push(Number(execFileSync("sh", ["-c", script(hostDir)], { encoding: "utf8" }).trim()));
    }
    results.host![name] = median(runs);
  }

  for (const backend of backends) {
    const row: Record<string, number> = {};
    const tti: number[] = [];
    for (let i = 0; i < TTI_RUNS; i++) {
      const start = performance.now();
      const run = await daemon.cli(["exec", "--backend", backend, "--", "true"]);
      if (run.code !== 0) throw new Error(`exec --backend ${backend} failed: ${run.stderr}`);
      tti.push(performance.now() - start);
    }
    row.tti = median(tti);
    const id = (await daemon.cli(["sandbox", "create", "--backend", backend])).stdout.trim();
    cleanups.push(() => daemon.cli(["sandbox", "rm", id]));
    for (const [name, script] of Object.entries(WORKLOADS)) {
      const runs: number[] = [];
      for (let i = 0; i < RUNS; i++) {
        const run = await daemon.cli(["exec", "--in", id, "--", "sh", "-c", `rm -rf /tmp/w; ${script("/tmp")}`], { timeoutMs: 30 * 60_000 });
        if (run.code !== 0) throw new Error(`${name} on ${backend} failed: ${run.stderr}`);
        runs.push(Number(run.stdout.trim()));
      }
      row[name] = median(runs);
    }
    results[backend] = row;
  }

  const columns = ["tti", ...Object.keys(WORKLOADS)];
  const cell = (backend: string, column: string) => {
    const ms = results[backend]![column]!;
    return backend === "host" ? `${ms.toFixed(0)} ms` : `${ms.toFixed(0)} ms (${(ms / results.host![column]!).toFixed(1)}x)`;
  };
  console.log(`backends vs the host, same run; medians of ${RUNS} (TTI ${TTI_RUNS}); TTI = a new sandbox running \`true\` through the CLI (host: spawning sh)`);
  console.log("");
  console.log(`| backend | ${columns.map((c) => (c === "tti" ? "TTI" : c)).join(" | ")} |`);
  console.log(`|---|${columns.map(() => "---").join("|")}|`);
  for (const backend of ["host", ...backends]) console.log(`| ${backend} | ${columns.map((c) => cell(backend, c)).join(" | ")} |`);
}

try {
  await main();
} finally {
  for (const fn of cleanups.reverse()) await fn();
}
