import { spawn, execFile, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { fileURLToPath } from "node:url";
import { connectAgent, type AgentClient, type AgentProcess, type ExitStatus } from "../../src/agent-protocol/index.ts";

const run = promisify(execFile);
const buildScript = fileURLToPath(new URL("../../agent/build.sh", import.meta.url));

/** Builds cleanroom-agent from source into a fresh temp dir (CLEANROOM_AGENT_BINARY: use that binary instead). */
export async function buildAgent(): Promise<{ binary: string; dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), "cleanroom-agent-test-"));
  const prebuilt = process.env.CLEANROOM_AGENT_BINARY;
  if (prebuilt) return { binary: prebuilt, dir };
  await run(buildScript, [dir], { timeout: 300_000, maxBuffer: 4 * 1024 * 1024 });
  return { binary: join(dir, "cleanroom-agent"), dir };
}

export interface RunningAgent {
  socketPath: string;
  child: ChildProcess;
  pid: number;
  connect(): Promise<AgentClient>;
  /** SIGTERM, then SIGKILL after 3 s; resolves when the agent has exited */
  stop(): Promise<void>;
}

/** Starts the agent in --listen mode on a socket inside dir. */
export async function startAgent(binary: string, dir: string, name = "agent.sock"): Promise<RunningAgent> {
  const socketPath = join(dir, name);
  const child = spawn(binary, ["--listen", socketPath], { stdio: ["ignore", "ignore", "inherit"] });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
    await exited;
    clearTimeout(timer);
  };
  try {
    const probe = await connectAgent(socketPath, { timeoutMs: 5000 });
    probe.close();
  } catch (err) {
    await stop();
    throw err;
  }
  return { socketPath, child, pid: child.pid!, connect: () => connectAgent(socketPath, { timeoutMs: 2000 }), stop };
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

/** Runs req to completion, collecting output. */
export async function runToEnd(process: AgentProcess): Promise<{ stdout: string; stderr: string; exit: ExitStatus }> {
  const [stdout, stderr, exit] = await Promise.all([readAll(process.stdout), readAll(process.stderr), process.exit]);
  return { stdout: stdout.toString("utf8"), stderr: stderr.toString("utf8"), exit };
}

export async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Resolves with the output once it matches pattern (or rejects after timeoutMs). */
export function waitForOutput(stream: NodeJS.ReadableStream, pattern: RegExp, timeoutMs = 5000): Promise<{ match: RegExpMatchArray; text: () => string }> {
  let text = "";
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`output did not match ${pattern} within ${timeoutMs} ms: ${JSON.stringify(text)}`)), timeoutMs);
    const onData = (chunk: Buffer) => {
      text += chunk.toString("utf8");
      const match = text.match(pattern);
      if (match) {
        clearTimeout(timer);
        resolve({ match, text: () => text });
      }
    };
    stream.on("data", onData);
  });
}

export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function waitUntil(condition: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (condition()) return true;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return condition();
}
