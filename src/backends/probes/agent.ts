import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AGENT_PROTOCOL_VERSION, FrameDecoder, FrameType } from "../../agent-protocol/index.ts";
import { agentBinaryProblem } from "../linux/host-access.ts";
import { fail, pass, type HostCheck } from "./check.ts";

const HELLO_TIMEOUT_MS = 1_500;
const REBUILD = "rebuild the agent: bash agent/build.sh (npm run build does it too)";

/**
 * The agent binary every sandbox runs as PID 1: present, reachable by the sandbox's root, and speaking this daemon's
 * protocol version. The version comes from the binary itself: it is started on a throwaway socket and its HELLO read.
 */
export async function checkAgent(agentPath: string): Promise<HostCheck> {
  const problem = await agentBinaryProblem(agentPath);
  if (problem) return fail("agent", problem, problem.includes("is missing") ? REBUILD : "make the binary and every directory above it executable by others (chmod o+x)");
  let hello: AgentHello;
  try {
    hello = await agentHello(agentPath, HELLO_TIMEOUT_MS);
  } catch (err) {
    return fail("agent", `${agentPath} did not answer with HELLO: ${(err as Error).message}`, REBUILD);
  }
  if (hello.protocol !== AGENT_PROTOCOL_VERSION) {
    return fail("agent", `${agentPath} (cleanroom-agent ${hello.agent}) speaks protocol ${hello.protocol}; this daemon speaks ${AGENT_PROTOCOL_VERSION}`, REBUILD);
  }
  return pass("agent", `${agentPath}: cleanroom-agent ${hello.agent}, protocol ${hello.protocol}`);
}

interface AgentHello {
  protocol: number;
  agent: string;
}

/** Starts the agent on a socket in a fresh temp dir, reads its first frame, then stops it and removes the dir. */
async function agentHello(agentPath: string, timeoutMs: number): Promise<AgentHello> {
  const dir = await mkdtemp(join(tmpdir(), "cleanroom-doctor-agent-"));
  const socketPath = join(dir, "agent.sock");
  let child: ChildProcess | undefined;
  let timer: NodeJS.Timeout | undefined;
  try {
    child = spawn(agentPath, ["--listen", socketPath], { stdio: ["ignore", "ignore", "pipe"], env: { PATH: process.env.PATH ?? "/usr/bin:/bin" } });
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no HELLO within ${timeoutMs} ms`)), timeoutMs);
    });
    return await Promise.race([readHello(child, socketPath), timeout]);
  } finally {
    clearTimeout(timer);
    if (child) await stopChild(child);
    await rm(dir, { recursive: true, force: true });
  }
}

/** Connects as soon as the agent listens (polling) and resolves with its HELLO; rejects if the agent exits first. */
function readHello(child: ChildProcess, socketPath: string): Promise<AgentHello> {
  return new Promise((resolve, reject) => {
    let stderr = "";
    let settled = false;
    const settle = (fn: () => void) => {
      if (!settled) {
        settled = true;
        fn();
      }
    };
    child.stderr?.on("data", (d: Buffer) => {
      if (stderr.length < 4096) stderr += d.toString("utf8");
    });
    child.once("error", (err) => settle(() => reject(err)));
    child.once("exit", (code, signal) => settle(() => reject(new Error(`it exited (${signal ?? code})${stderr.trim() ? `: ${stderr.trim()}` : ""}`))));
    const attempt = () => {
      if (settled) return;
      const socket = createConnection(socketPath);
      socket.once("error", () => {
        socket.destroy();
        setTimeout(attempt, 10);
      });
      const decoder = new FrameDecoder((frame) => {
        socket.destroy();
        if (frame.type !== FrameType.HELLO) return settle(() => reject(new Error(`its first frame is type 0x${frame.type.toString(16)}, not HELLO`)));
        settle(() => {
          try {
            resolve(parseHello(frame.payload));
          } catch (err) {
            reject(err as Error);
          }
        });
      });
      socket.on("data", (chunk: Buffer) => {
        try {
          decoder.push(chunk);
        } catch (err) {
          socket.destroy();
          settle(() => reject(err as Error));
        }
      });
    };
    attempt();
  });
}

function parseHello(payload: Buffer): AgentHello {
  const value = JSON.parse(payload.toString("utf8")) as { protocol?: unknown; agent?: unknown };
  if (typeof value.protocol !== "number" || !Number.isInteger(value.protocol)) throw new Error("its HELLO has no protocol version");
  const agent = typeof value.agent === "string" && /^[\x20-\x7e]{1,64}$/.test(value.agent) ? value.agent : "?";
  return { protocol: value.protocol, agent };
}

/** SIGTERM, then SIGKILL if it lingers; resolves once the process is gone. */
async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const killTimer = setTimeout(() => child.kill("SIGKILL"), 500);
  await exited;
  clearTimeout(killTimer);
}
