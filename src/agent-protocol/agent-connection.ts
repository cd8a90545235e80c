import type { Socket } from "node:net";
import { performance } from "node:perf_hooks";
import { CleanroomError, messageOf } from "../errors/index.ts";
import { encodeExecRequest, parseAgentError, parseHello, parsePong, protocolError } from "./control-messages.ts";
import { ExecChannel } from "./exec-channel.ts";
import { FrameDecoder, FrameType, encodeFrame, encodeJsonFrame, type Frame } from "./frame-codec.ts";
import type { AgentClient, AgentInfo, AgentProcess, ExecRequest } from "./types.ts";

/** The protocol version this host speaks. */
export const AGENT_PROTOCOL_VERSION = 1;
const DEFAULT_PING_TIMEOUT_MS = 5000;
const MAX_CHANNEL = 0xffffffff;

interface PendingPing {
  startedAt: number;
  resolve: (ms: number) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

/**
 * One connection to an agent. Every frame from the agent is hostile input: anything unexpected closes
 * the connection with agent_protocol_error; exits still pending reject with that error.
 */
export class AgentConnection implements AgentClient {
  readonly closed: Promise<void>;
  /** settles on HELLO (or the connection's end before it) */
  readonly ready: Promise<AgentInfo>;
  readonly #socket: Socket;
  readonly #decoder: FrameDecoder;
  readonly #channels = new Map<number, ExecChannel>();
  readonly #pings = new Map<number, PendingPing>();
  #info: AgentInfo | undefined;
  #nextChannel = 1;
  #nextPingId = 1;
  #closeError: CleanroomError | undefined;
  #resolveReady!: (info: AgentInfo) => void;
  #rejectReady!: (err: Error) => void;

  constructor(socket: Socket) {
    this.#socket = socket;
    this.#decoder = new FrameDecoder((frame) => this.#onFrame(frame));
    this.ready = new Promise<AgentInfo>((resolve, reject) => {
      this.#resolveReady = resolve;
      this.#rejectReady = reject;
    });
    this.ready.catch(() => undefined);
    this.closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
    socket.on("data", (chunk: Buffer) => {
      try {
        this.#decoder.push(chunk);
      } catch (err) {
        this.#fail(err instanceof CleanroomError ? err : protocolError(messageOf(err)));
      }
    });
    socket.on("end", () => {
      if (!this.#decoder.atFrameBoundary) this.#fail(protocolError("the agent's stream ended inside a frame"));
      else this.#fail(new CleanroomError("agent_unavailable", "the agent closed the connection"));
    });
    socket.on("error", (err) => this.#fail(new CleanroomError("agent_unavailable", `agent connection failed: ${err.message}`)));
    socket.on("close", () => this.#fail(new CleanroomError("agent_unavailable", "the agent connection closed")));
  }

  get info(): AgentInfo {
    if (!this.#info) throw new CleanroomError("agent_unavailable", "the agent has not said HELLO yet");
    return this.#info;
  }

  get closeError(): CleanroomError | undefined {
    return this.#closeError;
  }

  ping(timeoutMs: number = DEFAULT_PING_TIMEOUT_MS): Promise<number> {
    if (this.#closeError) return Promise.reject(this.#closeError);
    const id = this.#nextPingId;
    this.#nextPingId = id >= MAX_CHANNEL ? 1 : id + 1;
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pings.delete(id);
        reject(new CleanroomError("agent_unavailable", `the agent did not answer a ping within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pings.set(id, { startedAt: performance.now(), resolve, reject, timer });
      this.#send(encodeJsonFrame(FrameType.PING, 0, 0, { id }));
    });
  }

  exec(req: ExecRequest): AgentProcess {
    const payload = encodeExecRequest(req);
    if (this.#nextChannel > MAX_CHANNEL) this.#fail(new CleanroomError("agent_unavailable", "this agent connection has used all its channel ids; reconnect"));
    const channel = this.#nextChannel++;
    const process = new ExecChannel(channel, { tty: req.tty !== undefined, stdin: Boolean(req.stdin) }, {
      send: (frame) => this.#send(frame),
      release: (id) => this.#channels.delete(id),
    });
    if (this.#closeError) {
      process.fail(this.#closeError);
      return process;
    }
    this.#channels.set(channel, process);
    this.#send(encodeFrame(FrameType.EXEC, 0, channel, payload));
    return process;
  }

  close(): void {
    this.#fail(new CleanroomError("agent_unavailable", "the agent connection was closed by the host"));
  }

  #send(frame: Buffer): void {
    if (!this.#closeError) this.#socket.write(frame);
  }

  #onFrame(frame: Frame): void {
    if (this.#closeError) return;
    if (!this.#info) {
      if (frame.type !== FrameType.HELLO || frame.channel !== 0 || frame.stream !== 0) throw protocolError("the first frame is not HELLO");
      const hello = parseHello(frame.payload);
      if (hello.protocolVersion !== AGENT_PROTOCOL_VERSION) {
        throw protocolError(`the agent speaks protocol version ${hello.protocolVersion}; this host speaks ${AGENT_PROTOCOL_VERSION}. Rebuild the sandbox with a matching cleanroom-agent`);
      }
      this.#info = hello;
      this.#resolveReady(hello);
      return;
    }
    if (frame.channel !== 0) {
      const channel = this.#channels.get(frame.channel);
      if (!channel) throw protocolError(`frame type 0x${frame.type.toString(16)} for channel ${frame.channel}, which is not open`);
      channel.handle(frame);
      return;
    }
    if (frame.stream !== 0) throw protocolError("connection frame with a stream");
    switch (frame.type) {
      case FrameType.PONG: {
        const id = parsePong(frame.payload);
        const pending = this.#pings.get(id);
        if (pending) {
          this.#pings.delete(id);
          clearTimeout(pending.timer);
          pending.resolve(performance.now() - pending.startedAt);
        } else if (id === 0 || id >= this.#nextPingId) {
          throw protocolError(`PONG ${id} answers no ping`);
        }
        return; // a PONG after its ping timed out
      }
      case FrameType.ERROR:
        throw protocolError(`the agent reported: ${parseAgentError(frame.payload)}`);
      case FrameType.HELLO:
        throw protocolError("a second HELLO");
      default:
        throw protocolError(`unexpected frame type 0x${frame.type.toString(16)} on channel 0`);
    }
  }

  #fail(err: CleanroomError): void {
    if (this.#closeError) return;
    this.#closeError = err;
    this.#socket.destroy();
    this.#rejectReady(err);
    for (const ping of this.#pings.values()) {
      clearTimeout(ping.timer);
      ping.reject(err);
    }
    this.#pings.clear();
    const channels = [...this.#channels.values()];
    this.#channels.clear();
    for (const channel of channels) channel.fail(err);
  }
}
