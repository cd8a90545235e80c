/**
 * Measures launch and destroy of the linux backend (median of N) on a busybox image with the real agent.
 * Run as root: `npx node test/backends/launch-timing.ts [runs]`. Not a test: prints numbers.
 */
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { Writable } from "node:stream";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { createLinuxBackend } from "../../src/backends/index.ts";
import { sandboxIdRange } from "../../src/config/index.ts";
import { busyboxLayer, firstBytesFromAgent, newSandboxId, testAgentPath } from "./fixtures.ts";

const runs = Number(process.argv[2] ?? 10);
const root = await mkdtemp(join(tmpdir(), "cleanroom-timing-"));
await chmod(root, 0o711);
const runcRunMs: number[] = [];
const mountMs: number[] = [];
const sink = new Writable({
  write(chunk: Buffer, _enc, cb) {
    const e = JSON.parse(chunk.toString()) as { runc_run_ms?: number; mount_ms?: number };
    if (e.runc_run_ms !== undefined) runcRunMs.push(e.runc_run_ms);
    if (e.mount_ms !== undefined) mountMs.push(e.mount_ms);
    cb();
  },
});
const backend = createLinuxBackend({
  stateDir: join(root, "state"),
  runDir: join(root, "run"),
  agentPath: testAgentPath(),
  idRange: sandboxIdRange,
  logger: pino({ level: "info" }, sink),
});
const base = await busyboxLayer(join(root, "base"), sandboxIdRange.hostBase);
const launchMs: number[] = [];
const readyMs: number[] = [];
const destroyMs: number[] = [];
try {
  for (let i = 0; i < runs + 1; i++) {
    const id = newSandboxId();
    const t0 = performance.now();
    const l = await backend.launch({
      sandboxId: id,
      lowerDirs: [base],
      imageConfig: { env: [], workingDir: "/", user: "" },
      resources: { vcpus: 1, memoryMiB: 256, pidsLimit: 128 },
    });
    const t1 = performance.now();
    await firstBytesFromAgent(l.agentSocketPath);
    const t2 = performance.now();
    await backend.destroy(id);
    const t3 = performance.now();
    if (i === 0) continue; // warm-up
    launchMs.push(t1 - t0);
    readyMs.push(t2 - t0);
    destroyMs.push(t3 - t2);
  }
} finally {
  for (const id of await backend.listSandboxIds()) await backend.destroy(id).catch(() => {});
  await rm(root, { recursive: true, force: true });
}
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return Math.round((s[Math.floor((s.length - 1) / 2)]! + s[Math.ceil((s.length - 1) / 2)]!) * 5) / 10;
};
console.log(
  JSON.stringify({ runs, launch_ms: median(launchMs), mount_ms: median(mountMs.slice(1)), runc_run_ms: median(runcRunMs.slice(1)), agent_hello_ms: median(readyMs), destroy_ms: median(destroyMs) }),
);
