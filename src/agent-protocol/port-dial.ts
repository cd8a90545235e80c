import { Duplex, PassThrough } from "node:stream";
import { CleanroomError } from "../errors/index.ts";
import { FileHelperRun } from "./file-helper.ts";
import { DEFAULT_AGENT_PATH_IN_SANDBOX } from "./sandbox-files.ts";
import type { AgentClient } from "./types.ts";

/**
 * A TCP connection to 127.0.0.1:`port` inside the sandbox, through the agent's dial helper on an exec channel
 * (agent/dial.go): writes go to the sandbox's service, its answer is readable, end() half-closes. The stream errors
 * with the helper's reason (e.g. failed_precondition: nothing listens) instead of ending when the dial fails.
 */
export function dialSandboxPort(agent: AgentClient, port: number, opts: { agentPath?: string } = {}): Duplex {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new CleanroomError("invalid_argument", `port ${port} is not 1..65535`);
  const run = new FileHelperRun(agent, opts.agentPath ?? DEFAULT_AGENT_PATH_IN_SANDBOX, "dial", {}, { stdin: true, argv: ["dial", String(port)] });
  // the answer ends only once the helper's exit says the connection ended well, so a failed dial is an error
  const answer = new PassThrough();
  run.stdout.pipe(answer, { end: false });
  run.stdout.once("end", () => run.succeeded.then(() => answer.end(), () => undefined));
  const connection = Duplex.from({ readable: answer, writable: run.stdin! });
  run.succeeded.catch((err: Error) => connection.destroy(err));
  connection.once("close", () => {
    if (!run.stdout.readableEnded) run.kill(new CleanroomError("agent_unavailable", "the forwarded connection was closed"));
  });
  return connection;
}
