import type { Readable, Writable } from "node:stream";
import type { CleanroomError } from "../errors/index.ts";

/** What to run. Exactly one of argv and shell (`/bin/sh -lc <shell>`). */
export interface ExecRequest {
  argv?: string[];
  shell?: string;
  /** KEY=VALUE entries; the agent adds a default PATH (and HOME, TERM for a tty) when missing */
  env?: string[];
  /** absolute; default "/" */
  cwd?: string;
  /** "uid[:gid]" or "name[:group]" looked up in the sandbox; default root */
  user?: string;
  tty?: { rows: number; cols: number };
  stdin?: boolean;
}

/** How a process ended; death by signal is exitCode 128+signo plus the signal name. */
export interface ExitStatus {
  exitCode: number;
  signal?: string;
}

export interface AgentProcess {
  /** bytes; in TTY mode all output comes here */
  readonly stdout: Readable;
  /** ends immediately in TTY mode */
  readonly stderr: Readable;
  /** null unless req.stdin; end() sends EOF */
  readonly stdin: Writable | null;
  resize(rows: number, cols: number): void;
  signal(sig: NodeJS.Signals): void;
  /** resolves after stdout+stderr have ended; rejects with CleanroomError("agent_unavailable") if the connection dies first */
  readonly exit: Promise<ExitStatus>;
}

export interface AgentInfo {
  protocolVersion: number;
  agentVersion: string;
}

export interface AgentClient {
  readonly info: AgentInfo;
  /** round trip in ms */
  ping(timeoutMs?: number): Promise<number>;
  exec(req: ExecRequest): AgentProcess;
  close(): void;
  /** resolves when the connection ends for any reason */
  readonly closed: Promise<void>;
  /** why the connection ended, once it has (agent_protocol_error, or agent_unavailable also after close()); undefined while open */
  readonly closeError: CleanroomError | undefined;
}
