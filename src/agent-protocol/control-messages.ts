import { CleanroomError } from "../errors/index.ts";
import { INITIAL_WINDOW_BYTES, MAX_FRAME_PAYLOAD_BYTES } from "./frame-codec.ts";
import type { ExecRequest, ExitStatus } from "./types.ts";

/** Agent control payloads are small; anything bigger is hostile. */
const MAX_CONTROL_PAYLOAD_BYTES = 64 * 1024;
const SIGNAL_NAME = /^SIG[A-Z0-9]{1,12}$/;

export function protocolError(message: string): CleanroomError {
  return new CleanroomError("agent_protocol_error", `agent protocol error: ${message}`);
}

function parseObject(payload: Buffer, what: string): Record<string, unknown> {
  if (payload.length > MAX_CONTROL_PAYLOAD_BYTES) throw protocolError(`${what} payload of ${payload.length} bytes is too large`);
  let value: unknown;
  try {
    value = JSON.parse(payload.toString("utf8"));
  } catch {
    throw protocolError(`${what} payload is not JSON`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw protocolError(`${what} payload is not a JSON object`);
  return value as Record<string, unknown>;
}

function integerField(obj: Record<string, unknown>, key: string, min: number, max: number, what: string): number {
  const value = obj[key];
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw protocolError(`${what}.${key} must be an integer in ${min}..${max}`);
  }
  return value;
}

export interface Hello {
  protocolVersion: number;
  agentVersion: string;
}

export function parseHello(payload: Buffer): Hello {
  const obj = parseObject(payload, "HELLO");
  const protocolVersion = integerField(obj, "protocol", 0, 0xffff, "HELLO");
  const agent = obj.agent;
  if (typeof agent !== "string" || agent.length === 0 || agent.length > 64 || !/^[\x21-\x7e]+$/.test(agent)) {
    throw protocolError("HELLO.agent must be a short printable version string");
  }
  return { protocolVersion, agentVersion: agent };
}

export function parsePong(payload: Buffer): number {
  return integerField(parseObject(payload, "PONG"), "id", 0, 0xffffffff, "PONG");
}

export function parseExit(payload: Buffer): ExitStatus {
  const obj = parseObject(payload, "EXIT");
  const exitCode = integerField(obj, "exitCode", 0, 255, "EXIT");
  if (obj.signal === undefined) return { exitCode };
  if (typeof obj.signal !== "string" || !SIGNAL_NAME.test(obj.signal)) throw protocolError("EXIT.signal must be a signal name like SIGKILL");
  return { exitCode, signal: obj.signal };
}

/** Credit returned for one stream; it can never exceed the initial window. */
export function parseWindow(payload: Buffer): number {
  return integerField(parseObject(payload, "WINDOW"), "credit", 1, INITIAL_WINDOW_BYTES, "WINDOW");
}

export function parseAgentError(payload: Buffer): string {
  const message = parseObject(payload, "ERROR").message;
  if (typeof message !== "string") throw protocolError("ERROR.message must be a string");
  return message.slice(0, 500).replace(/[^\x20-\x7e]/g, "?");
}

function invalid(message: string): CleanroomError {
  return new CleanroomError("invalid_argument", `exec request: ${message}`);
}

function checkString(value: unknown, what: string): string {
  if (typeof value !== "string") throw invalid(`${what} must be a string`);
  if (value.includes("\0")) throw invalid(`${what} contains a NUL byte`);
  return value;
}

/** Throws invalid_argument unless rows and cols are terminal sizes the agent accepts. */
export function validateTermSize(rows: unknown, cols: unknown): void {
  for (const [name, n] of [["rows", rows], ["cols", cols]] as const) {
    if (typeof n !== "number" || !Number.isInteger(n) || n < 1 || n > 65535) throw invalid(`terminal ${name} must be an integer in 1..65535`);
  }
}

/** Validates an exec request and encodes the EXEC payload (only known fields are sent). */
export function encodeExecRequest(req: ExecRequest): Buffer {
  const hasArgv = req.argv !== undefined;
  if (hasArgv === (req.shell !== undefined)) throw invalid("give exactly one of argv and shell");
  const body: Record<string, unknown> = {};
  if (req.argv !== undefined) {
    if (!Array.isArray(req.argv) || req.argv.length === 0) throw invalid("argv must be a non-empty array");
    const argv = req.argv.map((arg, i) => checkString(arg, `argv[${i}]`));
    if (argv[0] === "") throw invalid("argv[0] is empty");
    body.argv = argv;
  } else {
    body.shell = checkString(req.shell, "shell");
  }
  if (req.env !== undefined) {
    body.env = req.env.map((entry, i) => {
      const value = checkString(entry, `env[${i}]`);
      if (value.indexOf("=") <= 0) throw invalid(`env[${i}] is not KEY=VALUE`);
      return value;
    });
  }
  if (req.cwd !== undefined && req.cwd !== "") body.cwd = checkString(req.cwd, "cwd");
  if (req.user !== undefined && req.user !== "") body.user = checkString(req.user, "user");
  if (req.tty !== undefined) {
    validateTermSize(req.tty.rows, req.tty.cols);
    body.tty = { rows: req.tty.rows, cols: req.tty.cols };
  }
  if (req.stdin) body.stdin = true;
  const payload = Buffer.from(JSON.stringify(body), "utf8");
  if (payload.length > MAX_FRAME_PAYLOAD_BYTES) throw invalid(`the request is ${payload.length} bytes; the limit is ${MAX_FRAME_PAYLOAD_BYTES}`);
  return payload;
}

/** Signal names the agent knows (PROTOCOL.md); others are refused before they reach the wire. */
export const KNOWN_SIGNALS: ReadonlySet<string> = new Set([
  "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE", "SIGKILL", "SIGUSR1",
  "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGCHLD", "SIGCONT", "SIGSTOP", "SIGTSTP", "SIGTTIN",
  "SIGTTOU", "SIGURG", "SIGXCPU", "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO", "SIGPWR", "SIGSYS",
]);
