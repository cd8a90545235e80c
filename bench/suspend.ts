// Suspend and resume latency: the SuspendSandbox / ResumeSandbox RPCs (SDK, over the daemon's socket) on a sandbox
// running a busy loop, beside the baseline measured in the same run on the same container: bare `runc pause` and
// `runc resume` with the daemon's runc root. Also the first exec into a suspended sandbox (wake included) against an
// exec into an awake one. Medians of BENCH_RUNS (default 20). Run as root: `npm run bench:suspend`.
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { ensureBaseImage, startTestDaemon } from "../test/fixtures/daemon.ts";

const RUNS = Math.min(Math.max(Number(process.env.BENCH_RUNS ?? 20), 3), 200);
const cleanups: (() => unknown)[] = [];

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function timed(fn: () => Promise<unknown> | unknown): Promise<number> {
  const start = performance.now();
  await fn();
  return performance.now() - start;
}

async function main(): Promise<void> {
  const daemon = await startTestDaemon({ after: (fn: () => unknown) => void cleanups.push(fn) });
  await ensureBaseImage(daemon);
  const client = daemon.client;
  const sandbox = await client.createSandbox({});
  const id = sandbox.id;
  cleanups.push(() => sandbox.terminate().catch(() => undefined));
  const busy = await sandbox.exec(["sh", "-c", "nohup sh -c 'while :; do :; done' >/dev/null 2>&1 &"]);
  if (busy.exitCode !== 0) throw new Error(`could not start the busy loop: ${busy.stderr.toString()}`);
  const runc = (verb: string) => execFileSync("runc", ["--root", join(daemon.runDir, "runc"), verb, id], { stdio: "ignore" });

  const rpc = { suspend: [] as number[], resume: [] as number[] };
  const bare = { suspend: [] as number[], resume: [] as number[] };
  const execAwake: number[] = [];
  const execWaking: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    rpc.suspend.push(await timed(() => client.sandboxes.suspendSandbox({ sandboxId: id })));
    rpc.resume.push(await timed(() => client.sandboxes.resumeSandbox({ sandboxId: id })));
    bare.suspend.push(await timed(() => runc("pause")));
    bare.resume.push(await timed(() => runc("resume")));
    execAwake.push(await timed(() => sandbox.exec(["true"])));
    await client.sandboxes.suspendSandbox({ sandboxId: id });
    execWaking.push(await timed(() => sandbox.exec(["true"])));
  }
  const row = (name: string, ms: number[], base: number[]) =>
    `| ${name} | ${median(ms).toFixed(1)} | ${median(base).toFixed(1)} | ${(median(ms) / median(base)).toFixed(2)}x |`;
  console.log(`suspend/resume of a sandbox running a busy loop, median of ${RUNS}`);
  console.log("");
  console.log("| operation | ms | baseline ms | ratio |");
  console.log("|---|---|---|---|");
  console.log(row("SuspendSandbox RPC (vs runc pause)", rpc.suspend, bare.suspend));
  console.log(row("ResumeSandbox RPC (vs runc resume)", rpc.resume, bare.resume));
  console.log(row("exec `true` into a suspended sandbox (vs awake)", execWaking, execAwake));
}

try {
  await main();
} finally {
  for (const fn of cleanups.reverse()) await fn();
}
