import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { isCleanroomError } from "../../src/errors/index.ts";
import {
  connectAgent, encodeFrame, encodeJsonFrame, FrameType, Stream, FRAME_HEADER_BYTES, MAX_FRAME_PAYLOAD_BYTES,
  type AgentClient, type ExecRequest,
} from "../../src/agent-protocol/index.ts";
import { fakeAgent, type FakePeer } from "./fake-agent.ts";

function rawHeader(length: number, type: number, opts: { stream?: number; flags?: number; channel?: number } = {}): Buffer {
  const header = Buffer.alloc(FRAME_HEADER_BYTES);
  header.writeUInt32BE(length, 0);
  header[4] = type;
  header[5] = opts.stream ?? 0;
  header.writeUInt16BE(opts.flags ?? 0, 6);
  header.writeUInt32BE(opts.channel ?? 0, 8);
  return header;
}

function withTimeout<T>(promise: Promise<T>, what: string, ms = 3000): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms))),
  ]);
}

/** The bytes are sent instead of HELLO: connectAgent must fail with code and close its socket. */
async function expectHandshakeFailure(t: TestContext, bytes: Buffer[], end: boolean, pattern?: RegExp): Promise<void> {
  const agent = await fakeAgent(t, (peer) => {
    for (const b of bytes) peer.send(b);
    if (end) peer.socket.end();
  });
  await assert.rejects(connectAgent(agent.socketPath, { timeoutMs: 2000 }), (err) => {
    assert.ok(isCleanroomError(err, "agent_protocol_error"), `got ${String(err)}`);
    if (pattern) assert.match((err as Error).message, pattern);
    return true;
  });
  await withTimeout(agent.peers[0]!.closed, "the host closing the connection");
}

/**
 * After HELLO (and an exec, if req is given, answered by `respond`), the agent misbehaves: the client
 * must close with agent_protocol_error, and a pending exit must reject with it.
 */
async function expectSessionFailure(t: TestContext, req: ExecRequest | undefined, respond: (peer: FakePeer, channel: number) => void, pattern?: RegExp): Promise<void> {
  const agent = await fakeAgent(t, async (peer) => {
    peer.hello();
    let channel = 0;
    if (req) {
      const exec = await peer.nextFrame();
      assert.equal(exec.type, FrameType.EXEC);
      channel = exec.channel;
    }
    respond(peer, channel);
  });
  const client: AgentClient = await connectAgent(agent.socketPath, { timeoutMs: 2000 });
  const proc = req ? client.exec(req) : undefined;
  await withTimeout(client.closed, "the client closing");
  assert.ok(isCleanroomError(client.closeError, "agent_protocol_error"), `closeError is ${String(client.closeError)}`);
  if (pattern) assert.match(client.closeError!.message, pattern);
  if (proc) {
    await assert.rejects(proc.exit, (err) => isCleanroomError(err, "agent_protocol_error"));
    proc.stdout.resume();
    proc.stderr.resume();
    await withTimeout(new Promise((resolve) => proc.stdout.once("end", resolve)), "stdout ending");
  }
  await assert.rejects(client.ping(100), (err) => isCleanroomError(err, "agent_protocol_error"));
  await withTimeout(agent.peers[0]!.closed, "the host closing the connection");
}

test("an oversize declared length is refused without waiting for the payload", async (t) => {
  await expectHandshakeFailure(t, [rawHeader(MAX_FRAME_PAYLOAD_BYTES + 1, FrameType.HELLO)], false, /limit/);
});

test("a declared length of 4 GiB is refused", async (t) => {
  await expectHandshakeFailure(t, [rawHeader(0xffffffff, FrameType.DATA)], false);
});

test("a stream that ends inside a header is a protocol error", async (t) => {
  await expectHandshakeFailure(t, [rawHeader(10, FrameType.HELLO).subarray(0, 5)], true, /inside a frame/);
});

test("a stream that ends inside a payload is a protocol error", async (t) => {
  await expectHandshakeFailure(t, [rawHeader(100, FrameType.HELLO), Buffer.from('{"protocol":1')], true, /inside a frame/);
});

test("HELLO that is not JSON is refused", async (t) => {
  await expectHandshakeFailure(t, [encodeFrame(FrameType.HELLO, 0, 0, Buffer.from("{protocol:1"))], false, /not JSON/);
});

test("HELLO with another protocol version is refused", async (t) => {
  await expectHandshakeFailure(t, [encodeJsonFrame(FrameType.HELLO, 0, 0, { protocol: 2, agent: "9.9.9" })], false, /version 2/);
});

test("HELLO without an agent version is refused", async (t) => {
  await expectHandshakeFailure(t, [encodeJsonFrame(FrameType.HELLO, 0, 0, { protocol: 1 })], false, /HELLO\.agent/);
});

test("a first frame that is not HELLO is refused", async (t) => {
  await expectHandshakeFailure(t, [encodeJsonFrame(FrameType.PONG, 0, 0, { id: 1 })], false, /not HELLO/);
});

test("non-zero flags are refused", async (t) => {
  const hello = encodeJsonFrame(FrameType.HELLO, 0, 0, { protocol: 1, agent: "x" });
  hello.writeUInt16BE(1, 6);
  await expectHandshakeFailure(t, [hello], false, /flags/);
});

test("a silent agent times out as agent_unavailable", async (t) => {
  const agent = await fakeAgent(t, () => undefined);
  await assert.rejects(connectAgent(agent.socketPath, { timeoutMs: 200 }), (err) => isCleanroomError(err, "agent_unavailable"));
  await withTimeout(agent.peers[0]!.closed, "the host closing the connection");
});

test("no socket at all retries until the timeout, then agent_unavailable", async () => {
  const start = Date.now();
  await assert.rejects(connectAgent("/nonexistent/cleanroom/agent.sock", { timeoutMs: 150 }), (err) => isCleanroomError(err, "agent_unavailable"));
  assert.ok(Date.now() - start >= 100, "it retried");
});

test("an unknown frame type is a protocol error", async (t) => {
  await expectSessionFailure(t, undefined, (peer) => peer.send(encodeFrame(0x7f, 0, 0)), /unexpected frame type 0x7f/);
});

test("data on a channel that was never opened is a protocol error", async (t) => {
  await expectSessionFailure(t, undefined, (peer) => peer.send(encodeFrame(FrameType.DATA, Stream.STDOUT, 9, Buffer.from("x"))), /channel 9/);
});

test("EXIT on an unknown channel is a protocol error", async (t) => {
  await expectSessionFailure(t, { argv: ["true"] }, (peer, ch) => peer.send(encodeJsonFrame(FrameType.EXIT, 0, ch + 1, { exitCode: 0 })), /not open/);
});

test("EXIT with an out-of-range exit code is a protocol error", async (t) => {
  await expectSessionFailure(t, { argv: ["true"] }, (peer, ch) => peer.send(encodeJsonFrame(FrameType.EXIT, 0, ch, { exitCode: 300 })), /exitCode/);
});

test("EXIT with a bogus signal name is a protocol error", async (t) => {
  await expectSessionFailure(t, { argv: ["true"] }, (peer, ch) => peer.send(encodeJsonFrame(FrameType.EXIT, 0, ch, { exitCode: 137, signal: "kill -9; rm" })), /signal/);
});

test("a huge stdin credit is a protocol error", async (t) => {
  await expectSessionFailure(t, { argv: ["cat"], stdin: true }, (peer, ch) => peer.send(encodeJsonFrame(FrameType.WINDOW, Stream.STDIN, ch, { credit: 1e12 })), /credit/);
});

test("a negative credit is a protocol error", async (t) => {
  await expectSessionFailure(t, { argv: ["cat"], stdin: true }, (peer, ch) => peer.send(encodeJsonFrame(FrameType.WINDOW, Stream.STDIN, ch, { credit: -5 })), /credit/);
});

test("credit that would grow the window past its size is a protocol error", async (t) => {
  await expectSessionFailure(t, { argv: ["cat"], stdin: true }, (peer, ch) => peer.send(encodeJsonFrame(FrameType.WINDOW, Stream.STDIN, ch, { credit: 1 })), /exceeds the window/);
});

test("stdout beyond the granted credit is a protocol error", async (t) => {
  await expectSessionFailure(t, { argv: ["yes"] }, (peer, ch) => {
    for (let i = 0; i < 5; i++) peer.send(encodeFrame(FrameType.DATA, Stream.STDOUT, ch, Buffer.alloc(60_000, 0x79)));
  }, /exceeds the granted credit/);
});

test("stderr output in TTY mode is a protocol error", async (t) => {
  await expectSessionFailure(t, { argv: ["sh"], tty: { rows: 24, cols: 80 } }, (peer, ch) => peer.send(encodeFrame(FrameType.DATA, Stream.STDERR, ch, Buffer.from("x"))), /stream 2/);
});

test("DATA after EOF is a protocol error", async (t) => {
  await expectSessionFailure(t, { argv: ["true"] }, (peer, ch) => {
    peer.send(encodeFrame(FrameType.EOF, Stream.STDOUT, ch));
    peer.send(encodeFrame(FrameType.DATA, Stream.STDOUT, ch, Buffer.from("late")));
  }, /after EOF/);
});

test("a PONG that answers no ping is a protocol error", async (t) => {
  await expectSessionFailure(t, undefined, (peer) => peer.send(encodeJsonFrame(FrameType.PONG, 0, 0, { id: 4242 })), /answers no ping/);
});

test("a second HELLO is a protocol error", async (t) => {
  await expectSessionFailure(t, undefined, (peer) => peer.hello(), /second HELLO/);
});

test("an ERROR frame from the agent closes the connection with its message", async (t) => {
  await expectSessionFailure(t, undefined, (peer) => peer.send(encodeJsonFrame(FrameType.ERROR, 0, 0, { message: "bad frame\u0007" })), /agent reported: bad frame\?/);
});

test("a control payload that is a JSON array is a protocol error", async (t) => {
  await expectSessionFailure(t, { argv: ["true"] }, (peer, ch) => peer.send(encodeFrame(FrameType.EXIT, 0, ch, Buffer.from("[0]"))), /not a JSON object/);
});

test("a stream truncated inside a frame fails a running exec with agent_protocol_error", async (t) => {
  await expectSessionFailure(t, { argv: ["true"] }, (peer, ch) => {
    peer.send(Buffer.concat([encodeFrame(FrameType.DATA, Stream.STDOUT, ch, Buffer.from("partial")).subarray(0, 15)]));
    peer.socket.end();
  }, /inside a frame/);
});

test("an agent that hangs up between frames fails a running exec with agent_unavailable", async (t) => {
  const agent = await fakeAgent(t, async (peer) => {
    peer.hello();
    await peer.nextFrame();
    peer.send(encodeFrame(FrameType.DATA, Stream.STDOUT, 1, Buffer.from("some output")));
    peer.socket.end();
  });
  const client = await connectAgent(agent.socketPath);
  const proc = client.exec({ argv: ["true"] });
  const output: Buffer[] = [];
  proc.stdout.on("data", (chunk: Buffer) => output.push(chunk));
  await assert.rejects(proc.exit, (err) => isCleanroomError(err, "agent_unavailable"));
  await withTimeout(client.closed, "the client closing");
  assert.equal(Buffer.concat(output).toString(), "some output");
  assert.ok(isCleanroomError(client.closeError, "agent_unavailable"));
});

test("a well-behaved exchange through the fake agent works (the harness itself is sound)", async (t) => {
  const agent = await fakeAgent(t, async (peer) => {
    peer.hello();
    const exec = await peer.nextFrame();
    assert.deepEqual(JSON.parse(exec.payload.toString()), { argv: ["echo", "hi"] });
    peer.send(encodeFrame(FrameType.DATA, Stream.STDOUT, exec.channel, Buffer.from("hi\n")));
    peer.send(encodeFrame(FrameType.EOF, Stream.STDOUT, exec.channel));
    peer.send(encodeFrame(FrameType.EOF, Stream.STDERR, exec.channel));
    peer.send(encodeJsonFrame(FrameType.EXIT, 0, exec.channel, { exitCode: 0 }));
    const ping = await peer.nextFrame();
    assert.equal(ping.type, FrameType.PING);
    peer.send(encodeFrame(FrameType.PONG, 0, 0, ping.payload));
  });
  const client = await connectAgent(agent.socketPath);
  assert.deepEqual(client.info, { protocolVersion: 1, agentVersion: "fake-0.0.1" });
  const proc = client.exec({ argv: ["echo", "hi"] });
  let out = "";
  proc.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
  assert.deepEqual(await proc.exit, { exitCode: 0 });
  assert.equal(out, "hi\n");
  assert.ok((await client.ping()) >= 0);
  client.close();
  await client.closed;
});

test("invalid exec requests are refused before anything is sent", async (t) => {
  const agent = await fakeAgent(t, (peer) => peer.hello());
  const client = await connectAgent(agent.socketPath);
  t.after(() => client.close());
  for (const req of [{}, { argv: [] }, { argv: ["a"], shell: "b" }, { argv: ["a\0"] }, { argv: ["a"], env: ["NOEQUALS"] }, { argv: ["a"], tty: { rows: 0, cols: 80 } }] as ExecRequest[]) {
    assert.throws(() => client.exec(req), (err) => isCleanroomError(err, "invalid_argument"), JSON.stringify(req));
  }
  const proc = client.exec({ argv: ["sleep", "1"] });
  assert.throws(() => proc.signal("SIGNOPE" as NodeJS.Signals), (err) => isCleanroomError(err, "invalid_argument"));
  assert.equal(client.closeError, undefined);
});

test("connecting can be aborted while it retries", async () => {
  const controller = new AbortController();
  const reason = new Error("stop");
  setTimeout(() => controller.abort(reason), 30);
  await assert.rejects(connectAgent("/nonexistent/cleanroom/agent.sock", { timeoutMs: 5000, signal: controller.signal }), (err) => err === reason);
});

test("connecting can be aborted while it waits for HELLO, and the socket is closed", async (t) => {
  const agent = await fakeAgent(t, () => undefined);
  const controller = new AbortController();
  setTimeout(() => controller.abort(new Error("stop")), 30);
  await assert.rejects(connectAgent(agent.socketPath, { timeoutMs: 5000, signal: controller.signal }), /stop/);
  await withTimeout(agent.peers[0]!.closed, "the host closing the connection");
});

test("a flood of one-byte frames within the credit is delivered in order and stays bounded", async (t) => {
  const window = 256 * 1024;
  const agent = await fakeAgent(t, async (peer) => {
    peer.hello();
    const exec = await peer.nextFrame();
    const frames: Buffer[] = [];
    for (let i = 0; i < window; i++) frames.push(encodeFrame(FrameType.DATA, Stream.STDOUT, exec.channel, Buffer.of(i & 0xff)));
    peer.send(Buffer.concat(frames));
    peer.send(encodeFrame(FrameType.EOF, Stream.STDOUT, exec.channel));
    peer.send(encodeFrame(FrameType.EOF, Stream.STDERR, exec.channel));
    peer.send(encodeJsonFrame(FrameType.EXIT, 0, exec.channel, { exitCode: 0 }));
  });
  const client = await connectAgent(agent.socketPath);
  t.after(() => client.close());
  const proc = client.exec({ argv: ["x"] });
  await proc.exit; // nobody reads yet: everything sits in the client's queue
  const buffered = (proc.stdout as unknown as { bufferedBytes: number }).bufferedBytes;
  assert.equal(buffered, window);
  const chunks: Buffer[] = [];
  for await (const chunk of proc.stdout) chunks.push(chunk as Buffer);
  const all = Buffer.concat(chunks);
  assert.equal(all.length, window);
  assert.ok(chunks.length <= window / 1024, `${chunks.length} chunks: small frames are coalesced`);
  for (let i = 0; i < all.length; i++) if (all[i] !== (i & 0xff)) assert.fail(`byte ${i} is out of order`);
  assert.equal(client.closeError, undefined);
});
