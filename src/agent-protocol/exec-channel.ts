import type { Readable, Writable } from "node:stream";
import { CleanroomError } from "../errors/index.ts";
import { KNOWN_SIGNALS, parseExit, parseWindow, protocolError, validateTermSize } from "./control-messages.ts";
import { AgentOutputStream, AgentInputStream } from "./exec-streams.ts";
import { FrameType, Stream, encodeFrame, encodeJsonFrame, type Frame } from "./frame-codec.ts";
import type { AgentProcess, ExitStatus } from "./types.ts";

/** How a channel talks back to its connection. */
export interface ChannelTransport {
  /** writes bytes to the connection in order; a frame may come in pieces, sent back to back in one tick */
  send(frame: Buffer): void;
  /** the channel is finished; later frames for it are protocol errors */
  release(channel: number): void;
}

/** One exec on a connection: the host side of an EXEC channel. */
export class ExecChannel implements AgentProcess {
  readonly channel: number;
  readonly stdout: AgentOutputStream;
  readonly stderr: AgentOutputStream;
  readonly #stdin: AgentInputStream | null;
  readonly exit: Promise<ExitStatus>;
  readonly #tty: boolean;
  readonly #transport: ChannelTransport;
  #resolveExit!: (status: ExitStatus) => void;
  #rejectExit!: (err: Error) => void;
  #done = false;

  constructor(channel: number, opts: { tty: boolean; stdin: boolean }, transport: ChannelTransport) {
    this.channel = channel;
    this.#tty = opts.tty;
    this.#transport = transport;
    const sendWindow = (stream: number) => (credit: number) => {
      if (!this.#done) transport.send(encodeJsonFrame(FrameType.WINDOW, stream, channel, { credit }));
    };
    this.stdout = new AgentOutputStream("stdout", sendWindow(Stream.STDOUT));
    this.stderr = new AgentOutputStream("stderr", sendWindow(Stream.STDERR));
    if (opts.tty) this.stderr.finish();
    this.#stdin = opts.stdin
      ? new AgentInputStream(
          (chunk) => {
            if (this.#done) return;
            // header and payload as two writes: a frame built in one buffer would copy (and allocate) every
            // byte of an upload once more
            transport.send(dataFrameHeader(channel, chunk.length));
            transport.send(chunk);
          },
          () => {
            if (!this.#done) transport.send(encodeFrame(FrameType.EOF, Stream.STDIN, channel));
          },
        )
      : null;
    this.exit = new Promise<ExitStatus>((resolve, reject) => {
      this.#resolveExit = resolve;
      this.#rejectExit = reject;
    });
    // A caller that never awaits exit must not crash the daemon with an unhandled rejection.
    this.exit.catch(() => undefined);
  }

  get stdin(): Writable | null {
    return this.#stdin;
  }

  resize(rows: number, cols: number): void {
    validateTermSize(rows, cols);
    if (this.#done || !this.#tty) return;
    this.#transport.send(encodeJsonFrame(FrameType.RESIZE, 0, this.channel, { rows, cols }));
  }

  signal(sig: NodeJS.Signals): void {
    if (!KNOWN_SIGNALS.has(sig)) throw new CleanroomError("invalid_argument", `signal ${String(sig)} cannot be sent to a sandboxed process`);
    if (this.#done) return;
    this.#transport.send(encodeJsonFrame(FrameType.SIGNAL, 0, this.channel, { signal: sig }));
  }

  /** A frame from the agent for this channel. Throws agent_protocol_error. */
  handle(frame: Frame): void {
    switch (frame.type) {
      case FrameType.DATA:
        this.#output(frame.stream).receive(frame.payload);
        return;
      case FrameType.EOF:
        if (frame.payload.length !== 0) throw protocolError("EOF with a payload");
        this.#output(frame.stream).finish();
        return;
      case FrameType.WINDOW:
        if (frame.stream !== Stream.STDIN || !this.#stdin) throw protocolError(`WINDOW for stream ${frame.stream} on channel ${this.channel}`);
        this.#stdin.addCredit(parseWindow(frame.payload));
        return;
      case FrameType.EXIT: {
        if (frame.stream !== 0) throw protocolError("EXIT with a stream");
        const status = parseExit(frame.payload);
        this.#finish();
        void settleAfterOutput([this.stdout, this.stderr]).then(() => this.#resolveExit(status));
        return;
      }
      default:
        throw protocolError(`frame type 0x${frame.type.toString(16).padStart(2, "0")} on exec channel ${this.channel}`);
    }
  }

  /** The connection ended before EXIT: output ends, exit rejects. */
  fail(err: CleanroomError): void {
    if (this.#done) return;
    this.#finish();
    this.#rejectExit(err);
  }

  #output(stream: number): AgentOutputStream {
    if (stream === Stream.STDOUT) return this.stdout;
    if (stream === Stream.STDERR && !this.#tty) return this.stderr;
    throw protocolError(`output on stream ${stream} of channel ${this.channel}`);
  }

  #finish(): void {
    this.#done = true;
    this.stdout.finish();
    this.stderr.finish();
    this.#stdin?.abandon();
    this.#transport.release(this.channel);
  }
}

/** The 12-byte header of a stdin DATA frame; its first field is the payload length (PROTOCOL.md, "Frame"). */
function dataFrameHeader(channel: number, payloadBytes: number): Buffer {
  const header = encodeFrame(FrameType.DATA, Stream.STDIN, channel);
  header.writeUInt32BE(payloadBytes, 0);
  return header;
}

/**
 * Waits until each output stream has ended, for streams someone is consuming; a stream nobody reads
 * keeps its (bounded) bytes for a later reader and does not hold up the exit status.
 */
function settleAfterOutput(streams: Readable[]): Promise<unknown> {
  return Promise.all(
    streams.map((stream) => {
      const consumed = stream.readableFlowing === true || stream.listenerCount("readable") > 0;
      if (!consumed || stream.readableEnded || stream.destroyed) return undefined;
      return new Promise<void>((resolve) => {
        stream.once("end", resolve);
        stream.once("close", resolve);
      });
    }),
  );
}
