/**
 * The host side of the cleanroom-agent protocol (agent/PROTOCOL.md): connect to a sandbox's agent,
 * run processes with streamed stdio, PTY, signals and exit status, and work on files inside the sandbox
 * (SandboxFiles, through the agent's file helper). Every agent frame and helper output is validated.
 */
export { AGENT_PROTOCOL_VERSION } from "./agent-connection.ts";
export { connectAgent } from "./connect-agent.ts";
export { dialSandboxPort } from "./port-dial.ts";
export { SandboxFiles, DEFAULT_AGENT_PATH_IN_SANDBOX, type WriteOptions } from "./sandbox-files.ts";
export type { SandboxPathEntry } from "./file-entry.ts";
export type { AgentClient, AgentInfo, AgentProcess, ExecRequest, ExitStatus } from "./types.ts";
export {
  encodeFrame,
  encodeJsonFrame,
  FrameDecoder,
  FrameType,
  Stream,
  FRAME_HEADER_BYTES,
  MAX_FRAME_PAYLOAD_BYTES,
  INITIAL_WINDOW_BYTES,
  type Frame,
} from "./frame-codec.ts";
