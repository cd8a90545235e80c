import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { isCleanroomError } from "../../src/errors/index.ts";
import { connectAgent, type AgentClient } from "../../src/agent-protocol/index.ts";
import {
  buildAgent, startAgent, removeDir, runToEnd, readAll, waitForOutput, processExists, waitUntil, type RunningAgent,
} from "./agent-fixture.ts";

let dir = "";
let binary = "";
let agent: RunningAgent;
let client: AgentClient;
const strayPids = new Set<number>();

before(async () => {
  ({ binary, dir } = await buildAgent());
  agent = await startAgent(binary, dir);
  client = await agent.connect();
});

after(async () => {
  client?.close();
  await agent?.stop();
  for (const pid of strayPids) if (processExists(pid)) process.kill(pid, "SIGKILL");
  if (dir) await removeDir(dir);
});

test("echo prints its argument and exits 0, in a few ms", async (t) => {
  const connectTimes: number[] = [];
  for (let i = 0; i < 5; i++) {
    const start = performance.now();
    const c = await connectAgent(agent.socketPath);
    connectTimes.push(performance.now() - start);
    assert.equal(c.info.protocolVersion, 1);
    c.close();
  }
  const execTimes: number[] = [];
  for (let i = 0; i < 15; i++) {
    const start = performance.now();
    const result = await runToEnd(client.exec({ argv: ["echo", "hi"] }));
    execTimes.push(performance.now() - start);
    assert.deepEqual(result, { stdout: "hi\n", stderr: "", exit: { exitCode: 0 } });
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  t.diagnostic(`connect+HELLO median ${median(connectTimes).toFixed(2)} ms; exec echo round trip median ${median(execTimes).toFixed(2)} ms; ping ${(await client.ping()).toFixed(2)} ms`);
  assert.ok(median(execTimes) < 50, "exec round trip is fast");
});

test("exit code of the workload is reported", async () => {
  const result = await runToEnd(client.exec({ shell: "echo out; echo err >&2; exit 3" }));
  assert.deepEqual(result, { stdout: "out\n", stderr: "err\n", exit: { exitCode: 3 } });
});

test("death by SIGKILL is exit 137 with the signal name", async () => {
  const result = await runToEnd(client.exec({ argv: ["/bin/sh", "-c", "kill -9 $$"] }));
  assert.deepEqual(result.exit, { exitCode: 137, signal: "SIGKILL" });
});

test("stdin is piped through cat byte for byte, with EOF", async () => {
  const input = Buffer.alloc(3 * 1024 * 1024 + 17);
  for (let i = 0; i < input.length; i++) input[i] = (i * 31) & 0xff;
  const proc = client.exec({ argv: ["cat"], stdin: true });
  proc.stdin!.end(input);
  const [out, exit] = await Promise.all([readAll(proc.stdout), proc.exit]);
  assert.equal(exit.exitCode, 0);
  assert.ok(out.equals(input), `cat returned ${out.length} bytes of ${input.length}`);
});

test("destroying stdin closes it, so the workload sees EOF", async () => {
  const proc = client.exec({ argv: ["cat"], stdin: true });
  proc.stdin!.write("partial\n");
  proc.stdin!.destroy();
  const result = await runToEnd(proc);
  assert.deepEqual(result, { stdout: "partial\n", stderr: "", exit: { exitCode: 0 } });
});

test("ending stdin of a TTY exec sends end-of-file to the terminal", async () => {
  const proc = client.exec({ argv: ["cat"], tty: { rows: 24, cols: 80 }, stdin: true });
  proc.stdin!.end("typed\n");
  const result = await runToEnd(proc);
  assert.equal(result.exit.exitCode, 0);
  assert.match(result.stdout, /typed\r\n/);
});

test("a 50 MiB stdout stream arrives intact", async () => {
  const size = 50 * 1024 * 1024;
  const proc = client.exec({ shell: `exec 3>&1; head -c ${size} /dev/urandom | tee /dev/fd/3 | sha256sum >&2` });
  const hash = createHash("sha256");
  let bytes = 0;
  proc.stdout.on("data", (chunk: Buffer) => {
    hash.update(chunk);
    bytes += chunk.length;
  });
  const stderr = readAll(proc.stderr);
  const exit = await proc.exit;
  assert.equal(exit.exitCode, 0);
  assert.equal(bytes, size);
  assert.equal((await stderr).toString().split(" ")[0], hash.digest("hex"));
});

test("a paused consumer stops the workload: bounded buffers on both sides", async (t) => {
  const window = 256 * 1024;
  const total = 100 * 1024 * 1024;
  const proc = client.exec({ shell: `echo $$ >&2; exec head -c ${total} /dev/zero` });
  const { match } = await waitForOutput(proc.stderr, /^(\d+)\n/);
  const pid = Number(match[1]);
  strayPids.add(pid);
  await new Promise((resolve) => setTimeout(resolve, 700));
  const buffered = (proc.stdout as unknown as { bufferedBytes: number }).bufferedBytes;
  const written = Number(/wchar: (\d+)/.exec(readFileSync(`/proc/${pid}/io`, "utf8"))![1]);
  const agentRssKiB = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${agent.pid}/status`, "utf8"))![1]);
  t.diagnostic(`while paused: client buffers ${buffered} B, workload wrote ${written} B, agent RSS ${agentRssKiB} KiB`);
  assert.ok(buffered <= 2 * window, `the client buffers ${buffered} bytes`);
  assert.ok(written < 2 * 1024 * 1024, `the workload wrote ${written} bytes while nobody read`);
  assert.ok(agentRssKiB < 64 * 1024, `the agent's RSS is ${agentRssKiB} KiB`);
  let received = 0;
  let maxBuffered = 0;
  proc.stdout.on("data", (chunk: Buffer) => {
    received += chunk.length;
    maxBuffered = Math.max(maxBuffered, (proc.stdout as unknown as { bufferedBytes: number }).bufferedBytes);
  });
  const exit = await proc.exit;
  assert.deepEqual(exit, { exitCode: 0 });
  assert.equal(received, total);
  assert.ok(maxBuffered <= 2 * window, `the client buffered up to ${maxBuffered} bytes while flowing`);
});

test("a TTY exec gets /dev/pts/N and follows resize", async () => {
  const proc = client.exec({ argv: ["sh", "-c", "tty; read line; stty size"], tty: { rows: 24, cols: 80 }, stdin: true });
  assert.equal(await readAll(proc.stderr).then((b) => b.length), 0, "stderr ends at once in TTY mode");
  const seen = await waitForOutput(proc.stdout, /\/dev\/pts\/\d+/);
  proc.resize(40, 100);
  proc.stdin!.write("\n");
  const exit = await proc.exit;
  assert.equal(exit.exitCode, 0);
  assert.match(seen.text(), /40 100/);
});

test("SIGTERM reaches the workload and is reported", async () => {
  const proc = client.exec({ argv: ["sleep", "100"] });
  proc.signal("SIGTERM");
  assert.deepEqual((await runToEnd(proc)).exit, { exitCode: 143, signal: "SIGTERM" });
});

test("a command that does not exist exits 127 with a message", async () => {
  const result = await runToEnd(client.exec({ argv: ["definitely-not-a-command-xyz"] }));
  assert.equal(result.exit.exitCode, 127);
  assert.equal(result.stderr, 'cleanroom-agent: exec "definitely-not-a-command-xyz": executable file not found in $PATH\n');
});

test("a file that cannot be executed exits 126", async () => {
  const plain = join(dir, "plain-file");
  writeFileSync(plain, "not a program\n", { mode: 0o644 });
  const result = await runToEnd(client.exec({ argv: [plain] }));
  assert.equal(result.exit.exitCode, 126);
  assert.equal(result.stderr, `cleanroom-agent: exec "${plain}": permission denied\n`);
  const badCwd = await runToEnd(client.exec({ argv: ["true"], cwd: "/no/such/dir" }));
  assert.equal(badCwd.exit.exitCode, 126);
  assert.match(badCwd.stderr, /chdir "\/no\/such\/dir": no such file or directory/);
});

test("env, cwd and user are applied; PATH gets a default", async () => {
  const result = await runToEnd(client.exec({ argv: ["sh", "-c", 'echo "$FOO|$(pwd)|$(id -u):$(id -g)|$PATH"'], env: ["FOO=bar"], cwd: "/tmp", user: "65534:65534" }));
  assert.equal(result.stdout, "bar|/tmp|65534:65534|/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n");
  const missing = await runToEnd(client.exec({ argv: ["true"], user: "no-such-user-xyz" }));
  assert.equal(missing.exit.exitCode, 126);
  assert.match(missing.stderr, /unable to find user no-such-user-xyz/);
});

test("output is drained at most ~250 ms after exit when a background child holds the pipe", async () => {
  const start = performance.now();
  const result = await runToEnd(client.exec({ shell: "sleep 30 & echo $!" }));
  const elapsed = performance.now() - start;
  strayPids.add(Number(result.stdout.trim()));
  assert.equal(result.exit.exitCode, 0);
  assert.ok(elapsed < 2000, `exit took ${elapsed} ms`);
  process.kill(Number(result.stdout.trim()), "SIGKILL");
});

test("dropping the connection kills the processes it started", async () => {
  const other = await agent.connect();
  const proc = other.exec({ shell: "echo $$; exec sleep 100" });
  const { match } = await waitForOutput(proc.stdout, /^(\d+)\n/);
  const pid = Number(match[1]);
  strayPids.add(pid);
  assert.ok(processExists(pid));
  other.close();
  await other.closed;
  await assert.rejects(proc.exit, (err) => isCleanroomError(err, "agent_unavailable"));
  assert.ok(await waitUntil(() => !processExists(pid), 3000), `process ${pid} is still alive`);
});

test("several connections work at once and each gets HELLO", async () => {
  const clients = await Promise.all([agent.connect(), agent.connect(), agent.connect()]);
  try {
    const results = await Promise.all(clients.map((c, i) => runToEnd(c.exec({ argv: ["echo", String(i)] }))));
    assert.deepEqual(results.map((r) => r.stdout), ["0\n", "1\n", "2\n"]);
  } finally {
    for (const c of clients) c.close();
  }
});

test("SIGTERM to the agent forwards it to workloads, reports their exit and ends", async () => {
  const second = await startAgent(binary, dir, "second.sock");
  try {
    const c = await second.connect();
    const proc = c.exec({ argv: ["sleep", "100"] });
    await c.ping();
    second.child.kill("SIGTERM");
    assert.deepEqual((await runToEnd(proc)).exit, { exitCode: 143, signal: "SIGTERM" });
    await c.closed;
    assert.ok(await waitUntil(() => second.child.exitCode !== null, 3000), "the agent exited");
    assert.equal(second.child.exitCode, 0);
  } finally {
    await second.stop();
  }
});
