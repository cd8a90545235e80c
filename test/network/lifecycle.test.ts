// Teardown, reconcile after a killed daemon, and restore after a restart. Run as root.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { newSandboxId, netWorld, type NetWorld } from "./world.ts";

/** Everything of `id` the host still holds, found by looking at the host (not asking the manager). */
function leftovers(w: NetWorld, id: string, hostAddress?: string): string[] {
  const found: string[] = [];
  if (existsSync(`/run/netns/${w.prefix}${id}`)) found.push("netns");
  if (existsSync(`/sys/class/net/${w.prefix}${id}`)) found.push("veth");
  const table = execFileSync("nft", ["list", "table", "inet", w.table], { encoding: "utf8" });
  if (table.includes(id)) found.push("nft");
  const leases = existsSync(join(w.stateDir, "leases.json")) ? readFileSync(join(w.stateDir, "leases.json"), "utf8") : "";
  if (leases.includes(id)) found.push("lease");
  if (hostAddress) {
    const sockets = execFileSync("ss", ["-Hlnut"], { encoding: "utf8" });
    if (sockets.includes(`${hostAddress}:`)) found.push("dns listener");
  }
  return found;
}

test("teardown leaves no netns, veth, nft chain, set or dispatch element, DNS listener or lease, and is idempotent", async (t) => {
  const w = await netWorld(t);
  const sb = await w.sandbox({ stages: { dependencies: [{ host: "api.test", ports: [8080] }], execution: [{ host: "10.250.0.9", ports: [443] }] }, initialStage: "dependencies" });
  await sb.resolve("api.test");
  assert.deepEqual(leftovers(w, sb.id, sb.network.hostAddress).sort(), ["dns listener", "lease", "netns", "nft", "veth"]);
  await w.net.tearDown(sb.id);
  assert.deepEqual(leftovers(w, sb.id, sb.network.hostAddress), []);
  assert.equal(w.net.lookup(sb.id), undefined);
  await w.net.tearDown(sb.id);
  // the base table stays for the next sandbox
  assert.match(execFileSync("nft", ["list", "table", "inet", w.table], { encoding: "utf8" }), /chain forward/);
});

test("a daemon killed during set-ups leaks nothing once a new daemon reconciles; live sandboxes are kept", async (t) => {
  const w = await netWorld(t);
  const live = await w.sandbox({ allow: [{ host: "api.test", ports: [8080] }] });
  await live.resolve("api.test");
  const { resolver: _, ...options } = w.options;
  const orphans: string[] = [];
  for (const delayMs of [0, 40, 80, 160, 400]) {
    const ids = [newSandboxId(), newSandboxId(), newSandboxId()];
    orphans.push(...ids);
    const child = spawn(process.execPath, [join(import.meta.dirname, "crash-setup.ts"), JSON.stringify({ options, ids })], { stdio: ["ignore", "pipe", "inherit"] });
    w.defer(() => child.kill("SIGKILL"));
    await new Promise<void>((resolve) => createInterface({ input: child.stdout }).on("line", (l) => l === "started" && resolve()));
    await new Promise((r) => setTimeout(r, delayMs));
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGKILL");
    await exited;
  }
  assert.ok(orphans.some((id) => leftovers(w, id).length > 0), "the kills left something to reconcile");
  const restarted = await w.restartManager();
  const { removed } = await restarted.reconcile([live.id]);
  for (const id of orphans) assert.deepEqual(leftovers(w, id), [], `orphan ${id}`);
  assert.ok(removed.every((id) => orphans.includes(id)) && !removed.includes(live.id));
  // the live sandbox's rules survived: its allowed destination still answers
  assert.equal(await live.connect(w.upstream, 8080), "connected");
  assert.equal(await live.connect(w.upstream, 9090), "refused");
});

test("after a restart, restore brings back DNS and keeps the sandbox's open connections", async (t) => {
  const w = await netWorld(t);
  const spec = { allow: [{ host: "api.test", ports: [8080] }] };
  const sb = await w.sandbox(spec);
  await sb.resolve("api.test");
  const open = await sb.probe<{ conn: number }>({ op: "open", host: w.upstream, port: 8080 });
  assert.equal(await sb.probe({ op: "request", conn: open.conn }), "200");
  await w.net.close(); // the daemon stops; the sandbox keeps running
  assert.ok((await sb.resolve("api.test")).error, "no DNS while the daemon is down");
  const restarted = await w.restartManager();
  assert.deepEqual(await restarted.reconcile([sb.id]), { removed: [] });
  const restored = await restarted.restore({ ...spec, sandboxId: sb.id });
  assert.equal(restored.sandboxAddress, sb.network.sandboxAddress);
  assert.equal(await sb.probe({ op: "request", conn: open.conn }), "200", "the connection survived the restart");
  assert.equal((await sb.resolve("api.test")).rcode, "NOERROR");
  assert.equal((await sb.resolve("other.test")).rcode, "REFUSED");
  await restarted.tearDown(sb.id);
  assert.deepEqual(leftovers(w, sb.id), []);
});

test("setting up an id that already has a network fails and leaves the existing one alone", async (t) => {
  const w = await netWorld(t);
  const sb = await w.sandbox({ allow: [{ host: "api.test", ports: [8080] }] });
  await assert.rejects(w.net.setUp({ sandboxId: sb.id, allowAll: true }), /already has a network/);
  await assert.rejects(w.net.setUp({ sandboxId: "NOT-AN-ID", allowAll: true }), /not 12 characters/);
  assert.equal((await sb.resolve("api.test")).rcode, "NOERROR");
  assert.equal(await sb.connect(w.upstream, 8080), "connected");
});
