// `cleanroom exec --repo-url … -- npm test` of a project depending on 200 registry packages, end to end (the CLI
// process, sandbox creation with its `npm ci` dependency block, the test, and removal as exec does by default),
// when the block's cache misses (cold) against when it hits (warm), alternating, in the same run. Cold rounds force
// a miss by changing the block's env (BENCH_ROUND), so the lockfile stays the same; each warm round is a
// source-only commit on the policy of the cold round before it. Round 1's cold run also starts with an empty
// gateway npm cache; later cold runs install through a warm one, which the table shows as registry requests.
// The repository is served by the Git server of the e2e gateway world, the packages by the test npm registry on
// loopback. Every run is checked from the CLI's block lines: cold must miss and publish, warm must restore. A floor
// run per round (the same files in a repository whose policy has no block, running `echo`) shows what a
// repository sandbox costs without any block: the least a warm run can take.
// Bounded: BENCH_ROUNDS (default 3, at most 10) rounds, each command cut at 300 s. Run as root: npm run bench:block-cache
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { unwind } from "../test/fixtures/cleanup.ts";
import { runCli, type TestDaemon } from "../test/fixtures/daemon.ts";
import { bareRepository, pushCommit, startGatewayWorld } from "../test/fixtures/gateway-world.ts";
import { lockfileFor, manyPackages } from "../test/fixtures/many-packages.ts";
import { ensureNodeImage } from "../test/fixtures/node-image.ts";
import { testCertificates } from "../test/fixtures/tls.ts";
import { startTestNpmRegistry, type TestNpmRegistry } from "../test/gateway/npm-registry.ts";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const PACKAGES = 200;
const COMMAND_TIMEOUT_MS = 300_000;
if (!Number.isInteger(ROUNDS) || ROUNDS < 1 || ROUNDS > 10) throw new Error(`BENCH_ROUNDS=${process.env.BENCH_ROUNDS} is outside 1…10`);
const cleanups: (() => unknown)[] = [];
const suite = { after: (fn: () => unknown) => void cleanups.push(fn) };

const TEST_OUTPUT = `bench tests passed: ${PACKAGES} dependencies loaded`;

/** test.js: requires every dependency and checks each is the module it names. */
function testScript(names: string[]): string {
  return `// requires every dependency; exits non-zero if one is missing or wrong
const assert = require("node:assert/strict");
const names = ${JSON.stringify(names)};
for (const name of names) assert.equal(require(name).name, name);
console.log("bench tests passed: " + names.length + " dependencies loaded");
`;
}

/**
 * cleanroom.yaml with the npm-install block; BENCH_ROUND in the block's env changes its key (and the policy hash).
 * Without a round: the same policy with no dependency block (the floor's repository).
 */
function policy(image: string, npmAuthority: string, round?: number): string {
  const head = `version: 1
sandbox:
  image:
    ref: ${image}
  network:
    allow:
      - git.test:443
      - ${npmAuthority}
`;
  if (round === undefined) return head;
  return `${head}  dependencies:
    - name: npm-install
      command: npm ci --no-audit --no-fund --loglevel=error
      env:
        BENCH_ROUND: "${round}"
      inputs:
        files: [package.json, package-lock.json]
      outputs:
        dirs: [node_modules, ~/.npm]
`;
}

interface BlockLine {
  verb: string;
  detail: string;
  tookMs: number;
}

/** The CLI's `cleanroom: dependencies npm-install: <verb> (<detail>) [<took>]` lines, in order. */
function blockLines(stderr: string): BlockLine[] {
  const lines: BlockLine[] = [];
  for (const match of stderr.matchAll(/^cleanroom: dependencies npm-install: (miss|published|restored|not cached|not published)(?: \((.*)\))? \[([\d.]+) (ms|s)\]$/gm)) {
    lines.push({ verb: match[1]!, detail: match[2] ?? "", tookMs: Number(match[3]) * (match[4] === "s" ? 1000 : 1) });
  }
  return lines;
}

interface Run {
  seconds: number;
  lines: BlockLine[];
  /** requests reaching the registry (not served by the gateway's cache): packuments and the like, and tarballs */
  registryMetadata: number;
  registryTarballs: number;
}

/**
 * One timed `cleanroom exec --repo-url https://git.test/<repo> -- <command>`; then waits (untimed) until exec's
 * sandbox is gone. `expectOutput`: a line its stdout must hold.
 */
async function timedExec(daemon: TestDaemon, registry: TestNpmRegistry, cwd: string, repo: string, command: string[], expectOutput: string, what: string): Promise<Run> {
  const requestsBefore = registry.requests.length;
  const started = performance.now();
  const result = await runCli(["exec", "--repo-url", `https://git.test/${repo}`, "--", ...command], daemon.env, undefined, COMMAND_TIMEOUT_MS, cwd);
  const seconds = (performance.now() - started) / 1000;
  if (result.code !== 0 || !result.stdout.includes(expectOutput)) {
    throw new Error(`${what}: exec exited ${result.code}; stdout:\n${result.stdout}\nstderr:\n${result.stderr}`);
  }
  const warnings = result.stderr.split("\n").filter((line) => /^cleanroom: warning:|^npm warn/i.test(line));
  if (warnings.length) throw new Error(`${what}: unexpected warnings on stderr:\n${warnings.join("\n")}`);
  await sandboxesGone(daemon, what);
  const requests = registry.requests.slice(requestsBefore);
  const tarballs = requests.filter((r) => r.url.endsWith(".tgz")).length;
  return { seconds, lines: blockLines(result.stderr), registryMetadata: requests.length - tarballs, registryTarballs: tarballs };
}

/** exec removes its sandbox without waiting; let that finish so it does not overlap the next run on 2 cores. */
async function sandboxesGone(daemon: TestDaemon, what: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const { sandboxes = [] } = await daemon.client.sandboxes.listSandboxes({ all: false });
    if (!sandboxes.length) return;
    if (Date.now() > deadline) throw new Error(`${what}: ${sandboxes.length} sandbox(es) still present 60 s after exec returned`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Fails loudly unless the run's block lines are exactly `expected` (by verb). */
function expectVerbs(run: Run, expected: string[], what: string): void {
  const verbs = run.lines.map((l) => l.verb);
  if (verbs.join(",") !== expected.join(",")) {
    throw new Error(`${what}: block lines ${JSON.stringify(run.lines)}, expected ${expected.join(", ")}`);
  }
}

const median = (xs: number[]) => {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

interface Round {
  round: number;
  cold: Run;
  warm: Run;
  floor: Run;
}

/** The per-round table, the medians and the ratios. */
function printReport(rows: Round[], setupSeconds: number): void {
  const gatewayCache = (r: Run) => (r.registryTarballs ? `empty (${r.registryTarballs} tarballs fetched)` : "warm (0 tarballs fetched)");
  process.stdout.write(`\n${PACKAGES} packages, \`cleanroom exec --repo-url … -- npm test\` wall time incl. CLI; setup ${setupSeconds.toFixed(0)} s\n`);
  process.stdout.write(`\n| round | run | s | block lines (CLI stderr) | gateway npm cache |\n|---|---|---|---|---|\n`);
  for (const { round, cold, warm, floor } of rows) {
    for (const [name, run] of [["cold", cold], ["warm", warm], ["floor", floor]] as const) {
      const lines = run.lines.map((l) => `${l.verb}${l.detail ? ` (${l.detail})` : ""} [${l.tookMs} ms]`).join("; ") || "(no block)";
      process.stdout.write(`| ${round} | ${name} | ${run.seconds.toFixed(2)} | ${lines} | ${name === "cold" ? gatewayCache(run) : "not used (npm did not run)"} |\n`);
    }
  }
  const warmMedian = median(rows.map((r) => r.warm.seconds));
  const floorMedian = median(rows.map((r) => r.floor.seconds));
  const coldEmpty = rows[0]!.cold.seconds;
  const coldWarmGateway = rows.slice(1).map((r) => r.cold.seconds);
  process.stdout.write(`\n| situation | runs | median s |\n|---|---|---|\n`);
  process.stdout.write(`| cold, empty gateway cache (round 1) | 1 | ${coldEmpty.toFixed(2)} |\n`);
  if (coldWarmGateway.length) process.stdout.write(`| cold, warm gateway cache (rounds 2–${ROUNDS}) | ${coldWarmGateway.length} | ${median(coldWarmGateway).toFixed(2)} |\n`);
  process.stdout.write(`| warm: block restored (rounds 1–${ROUNDS}) | ${rows.length} | ${warmMedian.toFixed(2)} |\n`);
  process.stdout.write(`| floor: same files, no block, \`-- sh -c 'echo floor'\` (rounds 1–${ROUNDS}) | ${rows.length} | ${floorMedian.toFixed(2)} |\n`);
  process.stdout.write("\n");
  if (coldWarmGateway.length) process.stdout.write(`warm / cold (warm gateway cache): ${((100 * warmMedian) / median(coldWarmGateway)).toFixed(0)} % (target ≤ 20 %)\n`);
  process.stdout.write(`warm / cold (empty gateway cache): ${((100 * warmMedian) / coldEmpty).toFixed(0)} %\n`);
  if (coldWarmGateway.length) process.stdout.write(`floor / cold (warm gateway cache): ${((100 * floorMedian) / median(coldWarmGateway)).toFixed(0)} % (a repository sandbox without the block: the least warm can be)\n`);
}

try {
  const benchStarted = performance.now();
  // 127.0.0.1 too: the lockfile is resolved on this host, where npm.test has no address
  const certs = testCertificates(["git.test", "npm.test", "127.0.0.1"]);
  cleanups.push(() => certs.remove());
  const packages = manyPackages(PACKAGES);
  const registry = await startTestNpmRegistry(suite.after, { certs, host: "npm.test", packages });
  const { "package.json": packageJsonBase, "package-lock.json": lockfile } = await lockfileFor(packages, { registryUrl: `https://127.0.0.1:${registry.port}/`, caFile: certs.caFile });
  const packageJson = `${JSON.stringify({ ...(JSON.parse(packageJsonBase) as object), scripts: { test: "node test.js" } }, null, 2)}\n`;
  registry.requests.length = 0; // the lockfile's packument fetches are not the sandboxes'

  const world = await startGatewayWorld(suite, {
    hosts: ["git.test"],
    gitHosts: ["git.test"],
    certs,
    records: { "npm.test": "127.0.0.1" },
    gatewayConfig: ["  npm:", `    registry: ${registry.authority}`].join("\n"),
  });
  const image = await world.pinned(await ensureNodeImage(world.daemon));
  const cwd = mkdtempSync(join(tmpdir(), "cleanroom-bench-blocks-"));
  cleanups.push(() => rmSync(cwd, { recursive: true, force: true }));
  const project = {
    "package.json": packageJson,
    "package-lock.json": lockfile,
    "test.js": testScript(packages.map((p) => p.name)),
    ".gitignore": "node_modules\n",
    "cleanroom.yaml": policy(image, registry.authority, 1),
  };
  const bare = bareRepository(world.root, "git.test", "org/bench.git", [project]);
  // the floor: the same files on the same image and network, no dependency block, running a command that needs nothing
  bareRepository(world.root, "git.test", "org/bench-floor.git", [{ ...project, "cleanroom.yaml": policy(image, registry.authority) }]);
  const npmTest = (what: string) => timedExec(world.daemon, registry, cwd, "org/bench.git", ["npm", "test"], TEST_OUTPUT, what);
  const setupSeconds = (performance.now() - benchStarted) / 1000;

  const rows: Round[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    if (round > 1) pushCommit(bare, { "cleanroom.yaml": policy(image, registry.authority, round) }, `cold round ${round}: BENCH_ROUND=${round}`);
    const cold = await npmTest(`cold round ${round}`);
    expectVerbs(cold, ["miss", "published"], `cold round ${round}`);
    pushCommit(bare, { [`src-change-${round}.txt`]: `a source-only change, round ${round}\n` }, `warm round ${round}: a source-only change`);
    const warm = await npmTest(`warm round ${round}`);
    expectVerbs(warm, ["restored"], `warm round ${round}`);
    if (warm.registryMetadata + warm.registryTarballs) throw new Error(`warm round ${round}: npm reached the registry (${warm.registryMetadata + warm.registryTarballs} requests)`);
    const floor = await timedExec(world.daemon, registry, cwd, "org/bench-floor.git", ["sh", "-c", "echo floor"], "floor", `floor round ${round}`);
    expectVerbs(floor, [], `floor round ${round}`);
    rows.push({ round, cold, warm, floor });
    const ran = cold.lines[1]!.detail.match(/ran in (\d+) ms/)?.[1] ?? "?";
    process.stdout.write(`round ${round}: cold ${cold.seconds.toFixed(2)} s (npm ci ${ran} ms, registry requests: ${cold.registryMetadata} metadata + ${cold.registryTarballs} tarballs), warm ${warm.seconds.toFixed(2)} s, floor ${floor.seconds.toFixed(2)} s\n`);
  }

  printReport(rows, setupSeconds);
} finally {
  await unwind(cleanups, "benchmark cleanup failed");
}
