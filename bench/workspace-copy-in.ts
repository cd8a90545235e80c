// `cleanroom workspace copy-in` of a 10k-file change set (new, uncommitted files of 1–3 KiB each) into a kept,
// repository-aware sandbox, beside `tar -cf - | tar -xf -` of the same files on the host in the same run.
// The repository is served by a real Git server in a test namespace (the e2e gateway world). Each run adds a fresh
// set, so every copy-in sends 10k files. Bounded: BENCH_RUNS (default 3) runs, each cut at 300 s.
// Run as root: npm run bench:workspace
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { unwind } from "../test/fixtures/cleanup.ts";
import { runCli } from "../test/fixtures/daemon.ts";
import { bareRepository, startGatewayWorld } from "../test/fixtures/gateway-world.ts";

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const FILES = Number(process.env.BENCH_FILES ?? 10_000);
const cleanups: (() => unknown)[] = [];
const suite = { after: (fn: () => unknown) => void cleanups.push(fn) };

/** Writes FILES files of 1–3 KiB (incompressible) under `dir`, 100 per directory; returns their total size. */
function writeChangeSet(dir: string): number {
  let bytes = 0;
  for (let i = 0; i < FILES; i++) {
    const sub = join(dir, `d${Math.floor(i / 100)}`);
    if (i % 100 === 0) mkdirSync(sub, { recursive: true });
    const content = randomBytes(1024 + ((i * 37) % 2048)).toString("base64");
    writeFileSync(join(sub, `f${i}.txt`), content);
    bytes += content.length;
  }
  return bytes;
}

function seconds(run: () => void): number {
  const started = performance.now();
  run();
  return (performance.now() - started) / 1000;
}

const mib = (bytes: number) => bytes / 1024 / 1024;

try {
  const world = await startGatewayWorld(suite, { hosts: ["git.test"], gitHosts: ["git.test"] });
  const policy = ["version: 1", "sandbox:", "  image:", `    ref: ${world.baseImage}`, "  network:", "    allow:", "      - git.test:443", ""].join("\n");
  const bare = bareRepository(world.root, "git.test", "org/bench.git", [{ "README.md": "bench\n", "cleanroom.yaml": policy }]);
  const clone = mkdtempSync(join(tmpdir(), "cleanroom-bench-ws-"));
  cleanups.push(() => rmSync(clone, { recursive: true, force: true }));
  execFileSync("git", ["clone", "-q", bare, clone], { stdio: "ignore" });
  execFileSync("git", ["-C", clone, "remote", "set-url", "origin", "https://git.test/org/bench.git"]);
  const created = await runCli(["create"], world.daemon.env, undefined, 120_000, clone);
  if (created.code !== 0) throw new Error(`create failed: ${created.stderr}`);
  const id = created.stdout.trim();
  cleanups.push(() => world.daemon.cli(["sandbox", "rm", id]));

  const rows: { run: number; files: number; mib: number; copyIn: number; tar: number }[] = [];
  for (let run = 0; run < RUNS; run++) {
    const set = `set${run}`;
    const bytes = writeChangeSet(join(clone, set));
    const target = mkdtempSync(join(tmpdir(), "cleanroom-bench-tar-"));
    const tar = seconds(() => execFileSync("sh", ["-c", `tar -C "$1" -cf - "$2" | tar -C "$3" -xf -`, "sh", clone, set, target]));
    rmSync(target, { recursive: true, force: true });
    const started = performance.now();
    const copied = await runCli(["workspace", "copy-in", id], world.daemon.env, undefined, 300_000, clone);
    const copyIn = (performance.now() - started) / 1000;
    if (copied.code !== 0) throw new Error(`copy-in failed: ${copied.stderr}`);
    const check = await world.daemon.cli(["exec", "--in", id, "--", "sh", "-c", `find /workspace/${set} -type f | wc -l`]);
    if (Number(check.stdout.trim()) !== FILES) throw new Error(`the sandbox has ${check.stdout.trim()} files of ${set}, expected ${FILES}`);
    rows.push({ run, files: FILES, mib: mib(bytes), copyIn, tar });
    process.stdout.write(`run ${run}: ${FILES} files, ${mib(bytes).toFixed(1)} MiB: copy-in ${copyIn.toFixed(2)} s, tar|tar ${tar.toFixed(2)} s (${copied.stdout.split("\n")[0]})\n`);
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const copyIn = median(rows.map((r) => r.copyIn));
  const tar = median(rows.map((r) => r.tar));
  const size = rows[0]!.mib;
  process.stdout.write(`\n| ${FILES}-file change set (${size.toFixed(1)} MiB) | median s | MiB/s | files/s |\n|---|---|---|---|\n`);
  process.stdout.write(`| workspace copy-in | ${copyIn.toFixed(2)} | ${(size / copyIn).toFixed(1)} | ${Math.round(FILES / copyIn)} |\n`);
  process.stdout.write(`| tar \\| tar on the host (baseline) | ${tar.toFixed(2)} | ${(size / tar).toFixed(1)} | ${Math.round(FILES / tar)} |\n`);
  process.stdout.write(`\ncopy-in / tar time ratio: ${(copyIn / tar).toFixed(1)}x\n`);
} finally {
  await unwind(cleanups, "benchmark cleanup failed");
}
