import { createServer, type Server, type Socket } from "node:net";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { FrameDecoder, FrameType, encodeJsonFrame, type Frame } from "../../src/agent-protocol/index.ts";

/** The agent's end of one connection, driven by a test. */
export interface FakePeer {
  socket: Socket;
  send(bytes: Buffer): void;
  hello(version?: number): void;
  /** the next frame the host sent */
  nextFrame(): Promise<Frame>;
  /** resolves when the host closed the connection */
  closed: Promise<void>;
}

/**
 * A unix-socket server that plays a (possibly hostile) agent. Each connection is handed to `script`.
 * Everything is removed in t.after.
 */
export async function fakeAgent(t: TestContext, script: (peer: FakePeer) => void | Promise<void>): Promise<{ socketPath: string; peers: FakePeer[] }> {
  const dir = await mkdtemp(join(tmpdir(), "cleanroom-fake-agent-"));
  const socketPath = join(dir, "agent.sock");
  const peers: FakePeer[] = [];
  const server: Server = createServer((socket) => {
    const frames: Frame[] = [];
    const waiters: ((frame: Frame) => void)[] = [];
    const decoder = new FrameDecoder((frame) => {
      const copy = { ...frame, payload: Buffer.from(frame.payload) };
      const waiter = waiters.shift();
      if (waiter) waiter(copy);
      else frames.push(copy);
    });
    socket.on("data", (chunk: Buffer) => decoder.push(chunk));
    socket.on("error", () => undefined);
    const peer: FakePeer = {
      socket,
      send: (bytes) => {
        if (!socket.destroyed) socket.write(bytes);
      },
      hello: (version = 1) => peer.send(encodeJsonFrame(FrameType.HELLO, 0, 0, { protocol: version, agent: "fake-0.0.1" })),
      nextFrame: () => {
        const frame = frames.shift();
        return frame ? Promise.resolve(frame) : new Promise((resolve) => waiters.push(resolve));
      },
      closed: new Promise((resolve) => socket.once("close", () => resolve())),
    };
    peers.push(peer);
    void script(peer);
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  t.after(async () => {
    for (const peer of peers) peer.socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await rm(dir, { recursive: true, force: true });
  });
  return { socketPath, peers };
}
