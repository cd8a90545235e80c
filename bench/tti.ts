// TTI: `cleanroom exec -- echo benchmark` in a new sandbox (warm image, CLI process included, teardown excluded),
// measured beside its baselines in the same run: a bare `runc run` of the same bundle, and a bare `node -e 0`.
// Also `exec --in` into a running sandbox. Prints medians and ratios. Run as root: `npm run bench:tti`.
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync, rmSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startTestDaemon, ensureBaseImage, cliPath, repoRoot } from "../test/fixtures/daemon.ts";

const RUNS = Number(process.env.BENCH_RUNS ?? 15);
const WARMUP = 2;
/** pause between runs, as between a person's commands: lets the previous sandbox's teardown and the pool refill finish */
const SETTLE_MS = Number(process.env.BENCH_SETTLE_MS ?? 1000);
const cleanups: (() => unknown)[] = [];

interface Timing { firstOutputMs: number; totalMs: number }

/** Spawns a command and times the first stdout byte and the exit. */
function timeCommand(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<Timing> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    let firstOutputMs = -1;
    let out = "";
    const child = spawn(cmd, args, { env, stdio: ["ignore", "pipe", "inherit"] });
    child.stdout.on("data", (d: Buffer) => {
      if (firstOutputMs < 0) firstOutputMs = performance.now() - start;
      out += d.toString();
    });
    child.on("error", reject);
    child.on("close", (code) => {
      const totalMs = performance.now() - start;
      if (code !== 0) reject(new Error(`${cmd} ${args.join(" ")} exited ${code}: ${out}`));
      else resolve({ firstOutputMs: firstOutputMs < 0 ? totalMs : firstOutputMs, totalMs });
    });
  });
}

async function measure(name: string, run: (i: number) => Promise<Timing>): Promise<{ name: string; first: number; total: number }> {
  const settle = () => new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
  for (let i = 0; i < WARMUP; i++) {
    await run(-1 - i);
    await settle();
  }
  const timings: Timing[] = [];
  for (let i = 0; i < RUNS; i++) {
    timings.push(await run(i));
    await settle();
  }
  const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  return { name, first: median(timings.map((t) => t.firstOutputMs)), total: median(timings.map((t) => t.totalMs)) };
}

async function main(): Promise<void> {
  const daemon = await startTestDaemon({ after: (fn: () => unknown) => void cleanups.push(fn) });
  await ensureBaseImage(daemon);
  const env = daemon.env;
  const node = join(repoRoot, "node_modules", "node", "bin", "node");

  const nodeBare = await measure("node -e 0", () => timeCommand(node, ["-e", "0"], env));
  const tti = await measure("cleanroom exec -- echo benchmark (new sandbox)", () => timeCommand(cliPath, ["exec", "--", "echo", "benchmark"], env));
  const kept = (await daemon.cli(["create"])).stdout.trim();
  const execIn = await measure("cleanroom exec --in <running> -- echo benchmark", () => timeCommand(cliPath, ["exec", "--in", kept, "--", "echo", "benchmark"], env));

  // the kept sandbox's own bundle, with echo as its process, run by bare runc
  const bench = mkdtempSync(join(tmpdir(), "cleanroom-bench-"));
  cleanups.push(() => rmSync(bench, { recursive: true, force: true }));
  const spec = JSON.parse(readFileSync(join(daemon.stateDir, "sandboxes", kept, "config.json"), "utf8"));
  spec.process.args = ["/bin/echo", "benchmark"];
  spec.process.env = spec.process.env.filter((e: string) => !e.startsWith("CLEANROOM_AGENT_LISTEN_FD="));
  mkdirSync(join(bench, "bundle"));
  const runcRoot = join(bench, "runc");
  const bareRunc = await measure("runc run (same bundle, echo)", (i) => {
    spec.linux.cgroupsPath = `cleanroom-bench/run${i < 0 ? `w${-i}` : i}`;
    writeFileSync(join(bench, "bundle", "config.json"), JSON.stringify(spec));
    return timeCommand("runc", ["--root", runcRoot, "run", "--bundle", join(bench, "bundle"), `bench-${process.pid}-${i < 0 ? `w${-i}` : i}`], env);
  });
  for (const controller of ["pids", "memory", "cpu,cpuacct", "cpu", "cpuacct", "blkio", "devices", "freezer", "cpuset", "systemd", "unified"]) {
    try {
      execFileSync("find", [`/sys/fs/cgroup/${controller}/cleanroom-bench`, "-depth", "-type", "d", "-exec", "rmdir", "{}", ";"], { stdio: "ignore" });
    } catch {
      // controller not mounted or already gone
    }
  }

  console.log(`\nTTI benchmark, ${RUNS} runs each after ${WARMUP} warm-ups, ${SETTLE_MS} ms apart (medians, ms)`);
  for (const r of [nodeBare, bareRunc, tti, execIn]) {
    console.log(`  ${r.name.padEnd(50)} first output ${r.first.toFixed(1).padStart(7)}   exit ${r.total.toFixed(1).padStart(7)}`);
  }
  console.log(`\n  TTI (first output)            ${tti.first.toFixed(1)} ms   target <= 150 ms; Cleanroom's published warm TTI: 353 ms`);
  console.log(`  TTI / bare runc run          ${(tti.first / bareRunc.total).toFixed(2)}x`);
  console.log(`  TTI / node -e 0              ${(tti.first / nodeBare.total).toFixed(2)}x`);
  console.log(`  exec --in (exit)             ${execIn.total.toFixed(1)} ms   target <= 60 ms; ${(execIn.total / nodeBare.total).toFixed(2)}x node -e 0`);
  console.log(`  Cleanroom published / ours   ${(353 / tti.first).toFixed(2)}x`);
}

try {
  await main();
} finally {
  for (const fn of cleanups.reverse()) await fn();
}
