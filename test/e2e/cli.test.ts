import { test, before } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { suiteCleanup } from "../fixtures/cleanup.ts";
import { startTestDaemon, ensureBaseImage, cliPath, type TestDaemon } from "../fixtures/daemon.ts";

const suite = suiteCleanup();
let daemon: TestDaemon;

before(async () => {
  daemon = await startTestDaemon(suite);
  await ensureBaseImage(daemon);
});

interface Listed { execution_id: string; sandbox_id: string; status: string; exit_code: number | null; command: string[] }

async function runningExecutions(): Promise<Listed[]> {
  return JSON.parse((await daemon.cli(["execution", "ls", "--json"])).stdout) as Listed[];
}

/** Starts `cleanroom exec` in the background and resolves once its execution is RUNNING. */
async function startExec(args: string[]): Promise<{ child: ReturnType<typeof spawn>; exited: Promise<number>; execution: Listed }> {
  const child = spawn(cliPath, ["exec", ...args], { env: daemon.env, stdio: ["ignore", "pipe", "pipe"] });
  suite.after(() => void child.kill("SIGKILL"));
  const exited = new Promise<number>((resolve) => child.on("close", (code) => resolve(code ?? -1)));
  const deadline = Date.now() + 20_000;
  for (;;) {
    const running = (await runningExecutions()).find((e) => e.command.includes(args[args.length - 1]!));
    if (running) return { child, exited, execution: running };
    if (Date.now() > deadline) throw new Error("execution never started");
    await new Promise((r) => setTimeout(r, 50));
  }
}

test("the first Ctrl-C cancels the execution with SIGINT", async () => {
  const { child, exited, execution } = await startExec(["--", "sleep", "31"]);
  child.kill("SIGINT");
  assert.equal(await exited, 130);
  const inspected = JSON.parse((await daemon.cli(["execution", "inspect", execution.execution_id, "--json"])).stdout);
  assert.equal(inspected.status, "CANCELED");
  assert.equal(inspected.signal, "SIGINT");
});

test("a second Ctrl-C detaches with 130 and leaves the execution running", async () => {
  const { child, exited, execution } = await startExec(["--keep", "--", "sh", "-c", "trap '' INT; sleep 32"]);
  child.kill("SIGINT");
  await new Promise((r) => setTimeout(r, 300));
  child.kill("SIGINT");
  assert.equal(await exited, 130);
  const inspected = JSON.parse((await daemon.cli(["execution", "inspect", execution.execution_id, "--json"])).stdout);
  assert.equal(inspected.status, "RUNNING");
  await daemon.cli(["sandbox", "rm", execution.sandbox_id]);
});

test("execution inspect shows the status, exit code and output of a finished execution", async () => {
  const id = (await daemon.cli(["create"])).stdout.trim();
  await daemon.cli(["exec", "--in", id, "--", "sh", "-c", "echo out; echo err >&2; exit 3"]);
  const listed = JSON.parse((await daemon.cli(["execution", "ls", "--sandbox-id", id, "--all", "--json"])).stdout) as Listed[];
  assert.equal(listed.length, 1);
  const inspected = JSON.parse((await daemon.cli(["execution", "inspect", listed[0]!.execution_id, "--json"])).stdout);
  assert.equal(inspected.status, "FAILED");
  assert.equal(inspected.exit_code, 3);
  assert.equal(inspected.stdout, "out\n");
  assert.equal(inspected.stderr, "err\n");
  const human = await daemon.cli(["execution", "inspect", listed[0]!.execution_id]);
  assert.match(human.stdout, /exit_code\s+3/);
  await daemon.cli(["sandbox", "rm", id]);
});

test("sandbox ls lists live sandboxes, and --all also the stopped ones", async () => {
  const id = (await daemon.cli(["sandbox", "create"])).stdout.trim();
  assert.match((await daemon.cli(["sandbox", "ls"])).stdout, new RegExp(`${id}\\s+READY\\s+linux`));
  await daemon.cli(["sandbox", "rm", id]);
  assert.doesNotMatch((await daemon.cli(["sandbox", "ls"])).stdout, new RegExp(id));
  assert.match((await daemon.cli(["sandbox", "ls", "--all"])).stdout, new RegExp(`${id}\\s+STOPPED`));
});

test("bad input gets a clear message and a non-zero exit", async () => {
  const noCommand = await daemon.cli(["exec"]);
  assert.equal(noCommand.code, 125);
  assert.match(noCommand.stderr, /no command given.*\[invalid_argument\]/);
  const unknownSandbox = await daemon.cli(["exec", "--in", "doesnotexist", "--", "true"]);
  assert.equal(unknownSandbox.code, 125);
  assert.match(unknownSandbox.stderr, /no sandbox with id "doesnotexist".*\[not_found\]/);
  const badFlag = await daemon.cli(["sandbox", "ls", "--bogus"]);
  assert.equal(badFlag.code, 2);
  assert.match(badFlag.stderr, /unknown option '--bogus'/);
  const badBackend = await daemon.cli(["exec", "--backend", "qemu", "--", "true"]);
  assert.equal(badBackend.code, 125);
  assert.match(badBackend.stderr, /\[backend_unavailable\]/);
});

test("doctor reports the linux backend usable with its capabilities", async () => {
  const result = await daemon.cli(["doctor", "--json"]);
  assert.equal(result.code, 0, result.stderr);
  const report = JSON.parse(result.stdout);
  const linux = report.backends.find((b: { backend: string }) => b.backend === "linux");
  assert.equal(linux.usable, true);
  assert.equal(linux.capabilities["network.default_deny"], true);
  assert.equal(report.default_backend, "linux");
  const gateway = report.checks.find((c: { name: string }) => c.name === "gateway");
  assert.match(gateway.detail, /sandboxes use http:\/\/gateway\.cleanroom\.internal:\d+/);
});

test("-n keeps stdin from the workload, --tty gives exec a terminal, --rm removes an --in sandbox", async () => {
  const noStdin = await daemon.cli(["exec", "-n", "--", "sh", "-c", "cat; echo end"], { input: "should not arrive\n" });
  assert.equal(noStdin.stdout, "end\n");
  const tty = await daemon.cli(["exec", "--tty", "--", "sh", "-c", "tty; test -t 0 && echo interactive"]);
  assert.match(tty.stdout, /^\/dev\/pts\/\d+\r?\ninteractive\r?\n$/);
  const id = (await daemon.cli(["create"])).stdout.trim();
  assert.equal((await daemon.cli(["exec", "--in", id, "--rm", "--", "true"])).code, 0);
  const deadline = Date.now() + 10_000;
  let status = "";
  while (Date.now() < deadline) {
    status = JSON.parse((await daemon.cli(["sandbox", "inspect", id, "--json"])).stdout).status;
    if (status === "STOPPED") break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(status, "STOPPED");
});
