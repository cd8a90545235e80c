// Throughput of `cleanroom cp` of one large file into and out of a sandbox, against `tar -cf - | tar -xf -` of the
// same file on the host in the same run (the bytes' path without a sandbox: read, one pipe, write):
//   cp in:   CLI reads the file → HTTP (binary Connect) → daemon → agent channel → file helper writes it in the sandbox
//   cp out:  the file helper reads it → agent channel → daemon → HTTP → CLI writes it
// Each run is a baseline, a cp in and a cp out (CLI start included); every copy's sha256 is checked outside the
// timing. Medians and ratios are printed. Bounded: BENCH_MIB (default 500) per copy, BENCH_RUNS (default 3) runs,
// each copy cut at 5 minutes. Run as root after `npm run build`: npm run bench:copy
import { spawn, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { closeSync, createReadStream, mkdirSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { unwind } from "../test/fixtures/cleanup.ts";
import { ensureBaseImage, startTestDaemon, type TestDaemon } from "../test/fixtures/daemon.ts";

const mib = Number(process.env.BENCH_MIB ?? 500);
const runs = Number(process.env.BENCH_RUNS ?? 3);
const COPY_TIMEOUT_MS = 5 * 60_000;
const SANDBOX_FILE = "/tmp/bench-copy.bin";

const cleanups: (() => unknown)[] = [];
// interrupted (Ctrl-C, a closed pipe): the daemon, its sandbox and the temp files are still removed
for (const signal of ["SIGINT", "SIGTERM", "SIGPIPE"] as const) {
  process.once(signal, () => void unwind(cleanups, "benchmark cleanup failed").finally(() => process.exit(130)));
}
try {
  const daemon = await startTestDaemon({ after: (fn: () => unknown) => void cleanups.push(fn) });
  await ensureBaseImage(daemon);
  const created = await daemon.cli(["sandbox", "create"]);
  if (created.code !== 0) throw new Error(created.stderr);
  const id = created.stdout.trim();
  const dir = mkdtempSync(join(tmpdir(), "cleanroom-bench-copy-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const source = join(dir, "data.bin");
  const sha = writeRandomFile(source, mib);
  const rates = { tar: [] as number[], in: [] as number[], out: [] as number[] };
  for (let i = 0; i < runs; i++) {
    const unpacked = join(dir, "unpacked");
    mkdirSync(unpacked);
    rates.tar.push(await mibPerSecond(() => tarPipe(dir, "data.bin", unpacked)));
    await expectSha(sha256OfFile(join(unpacked, "data.bin")), sha, "tar | tar");
    rmSync(unpacked, { recursive: true });

    rates.in.push(await mibPerSecond(() => cli(daemon, ["cp", source, `${id}:${SANDBOX_FILE}`])));
    await expectSha(sandboxSha(daemon, id), sha, "cp in");
    const back = join(dir, "back.bin");
    rates.out.push(await mibPerSecond(() => cli(daemon, ["cp", `${id}:${SANDBOX_FILE}`, back])));
    await expectSha(sha256OfFile(back), sha, "cp out");
    rmSync(back);
    await cli(daemon, ["exec", "--in", id, "--", "rm", "-f", SANDBOX_FILE]);
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const runsOf = (xs: number[]) => xs.map((x) => x.toFixed(0)).join(" ");
  const tar = median(rates.tar);
  console.log(`copy: one ${mib} MiB file, ${runs} runs each (MiB/s)`);
  console.log(`  tar -cf - | tar -xf - (host): median ${tar.toFixed(0).padStart(4)}  runs ${runsOf(rates.tar)}`);
  console.log(`  cleanroom cp into a sandbox:  median ${median(rates.in).toFixed(0).padStart(4)}  runs ${runsOf(rates.in)}  ${((median(rates.in) / tar) * 100).toFixed(0)} % of tar`);
  console.log(`  cleanroom cp out of it:       median ${median(rates.out).toFixed(0).padStart(4)}  runs ${runsOf(rates.out)}  ${((median(rates.out) / tar) * 100).toFixed(0)} % of tar`);
} finally {
  await unwind(cleanups, "benchmark cleanup failed");
}

async function mibPerSecond(copy: () => Promise<void>): Promise<number> {
  const started = performance.now();
  await copy();
  return mib / ((performance.now() - started) / 1000);
}

async function cli(daemon: TestDaemon, args: string[]): Promise<void> {
  const res = await daemon.cli(args, { timeoutMs: COPY_TIMEOUT_MS });
  if (res.code !== 0) throw new Error(`cleanroom ${args.join(" ")} exited ${res.code}: ${res.stderr}`);
}

/** `tar -cf - -C dir name | tar -xf - -C into`, the two processes joined by a pipe. */
async function tarPipe(dir: string, name: string, into: string): Promise<void> {
  const pack = spawn("tar", ["-cf", "-", "-C", dir, name], { stdio: ["ignore", "pipe", "inherit"] });
  const unpack = spawn("tar", ["-xf", "-", "-C", into], { stdio: [pack.stdout, "ignore", "inherit"] });
  pack.stdout.destroy(); // unpack holds the pipe now; our copy of its read end must not keep it open
  await Promise.all([exited(pack), exited(unpack)]);
}

/** Resolves when the process exits 0 (killed after COPY_TIMEOUT_MS). */
function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), COPY_TIMEOUT_MS);
    child.once("error", reject);
    child.once("exit", (code) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`${child.spawnfile} exited ${code}`));
    });
  });
}

async function sandboxSha(daemon: TestDaemon, id: string): Promise<string> {
  const res = await daemon.cli(["exec", "--in", id, "--", "sha256sum", SANDBOX_FILE], { timeoutMs: COPY_TIMEOUT_MS });
  if (res.code !== 0) throw new Error(`sha256sum in the sandbox failed: ${res.stderr}`);
  return res.stdout.split(" ")[0]!;
}

async function sha256OfFile(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

async function expectSha(actual: Promise<string>, expected: string, what: string): Promise<void> {
  const got = await actual;
  if (got !== expected) throw new Error(`${what}: the copy's sha256 is ${got}, not ${expected}`);
}

/** Writes sizeMiB of random bytes (incompressible, nothing any layer could shortcut) and returns their sha256. */
function writeRandomFile(path: string, sizeMiB: number): string {
  const hash = createHash("sha256");
  const fd = openSync(path, "w");
  try {
    for (let i = 0; i < sizeMiB; i++) {
      const chunk = randomBytes(1024 * 1024);
      hash.update(chunk);
      writeSync(fd, chunk);
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest("hex");
}
