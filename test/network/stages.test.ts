// Stage-scoped egress and --dangerously-allow-all with real netns, veth and nftables. Run as root.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { netWorld } from "./world.ts";

test("switching stage changes what resolves and connects, and cuts connections the old stage allowed", async (t) => {
  const w = await netWorld(t);
  const sb = await w.sandbox({
    stages: {
      dependencies: [{ host: "deps.test", ports: [9090] }, { host: "api.test", ports: [8080] }],
      execution: [{ host: "api.test", ports: [8080] }],
    },
    initialStage: "dependencies",
  });
  assert.equal(sb.network.activeStage, "dependencies");
  assert.equal((await sb.resolve("deps.test")).rcode, "NOERROR");
  assert.equal((await sb.resolve("api.test")).rcode, "NOERROR");
  const open = await sb.probe<{ conn: number }>({ op: "open", host: w.upstream, port: 9090 });
  assert.equal(await sb.probe({ op: "request", conn: open.conn }), "200");

  await w.net.activateStage(sb.id, "execution");
  assert.equal(w.net.lookup(sb.id)?.activeStage, "execution");
  assert.equal(await sb.probe({ op: "request", conn: open.conn }), "reset", "the dependencies connection is cut");
  assert.equal(await sb.connect(w.upstream, 9090), "refused");
  assert.equal((await sb.resolve("deps.test")).rcode, "REFUSED");
  // api.test was answered during dependencies: its address is already in the execution set
  assert.equal(await sb.connect(w.upstream, 8080), "connected");

  // a stage without a block gets nothing once any stage block exists
  await w.net.activateStage(sb.id, "services");
  assert.equal((await sb.resolve("api.test")).rcode, "REFUSED");
  assert.equal(await sb.connect(w.upstream, 8080), "refused");
  await w.net.activateStage(sb.id, null);
  assert.equal(await sb.connect(w.upstream, 8080), "refused");
  await w.net.activateStage(sb.id, "execution");
  assert.equal(await sb.connect(w.upstream, 8080), "connected");
});

test("allow-all opens egress to any host and port, but not the host, other sandboxes or the metadata address", async (t) => {
  const w = await netWorld(t);
  const open = await w.sandbox({ allowAll: true });
  const other = await w.sandbox({ allow: [{ host: "api.test", ports: [8080] }] });
  assert.equal(open.network.allowAll, true);
  const any = await open.resolve("other.test");
  assert.deepEqual(any.answers?.map((a) => a.data), [w.upstream]);
  assert.deepEqual(await open.http(w.upstream, 9090), { status: 200, body: "upstream 9090 /\n" });
  assert.equal(await open.connect(w.upstream, 8080), "connected");
  const server = createServer((c) => c.on("error", () => {}).end());
  await new Promise<void>((r) => server.listen(18175, w.upstreamHostSide, () => r()));
  w.defer(() => new Promise((r) => server.close(r)));
  assert.equal(await open.connect(w.upstreamHostSide, 18175), "refused", "the host's own address");
  assert.equal(await open.connect(open.network.hostAddress, 22), "refused");
  assert.equal(await open.connect("169.254.169.254", 80), "refused");
  assert.equal(await other.probe({ op: "listen", port: 7001 }), "listening");
  assert.equal(await open.connect(other.network.sandboxAddress, 7001), "refused");
  // stage switches do not narrow allow-all
  await w.net.activateStage(open.id, "execution");
  assert.equal(await open.connect(w.upstream, 8080), "connected");
});
