import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { chmod, chown, mkdir, readFile, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { isCleanroomError } from "../../src/errors/index.ts";
import { createLinuxBackend } from "../../src/backends/index.ts";
import { assertNothingLeft, firstBytesFromAgent, newSandboxId, runcCli, testAgentPath, testWorld, type TestWorld } from "./fixtures.ts";

async function launchError(w: TestWorld, spec: ReturnType<TestWorld["spec"]>, backend = w.backend): Promise<Error> {
  try {
    await backend.launch(spec);
  } catch (err) {
    assert.ok(isCleanroomError(err, "runtime_launch_failed"), `expected runtime_launch_failed, got ${String(err)}`);
    return err;
  }
  assert.fail("launch succeeded");
}

test("a missing layer dir fails the launch with runtime_launch_failed and leaves nothing", async (t) => {
  const w = await testWorld(t);
  const spec = w.spec({ lowerDirs: [w.lowerDirs[0]!, join(w.root, "no-such-layer")] });
  const err = await launchError(w, spec);
  assert.match(err.message, /no-such-layer/);
  await assertNothingLeft(w, spec.sandboxId);
});

test("a missing agent binary fails the launch and leaves nothing", async (t) => {
  const w = await testWorld(t);
  const backend = createLinuxBackend({ stateDir: w.stateDir, runDir: w.runDir, agentPath: join(w.root, "no-agent"), idRange: w.idRange });
  const spec = w.spec();
  const err = await launchError(w, spec, backend);
  assert.match(err.message, /agent binary .*no-agent is missing/);
  await assertNothingLeft(w, spec.sandboxId);
});

test("an image that blocks the agent mount point fails in runc: its stderr is in the error, everything taken is released", async (t) => {
  const w = await testWorld(t);
  // a hostile layer: /.cleanroom is a file, so runc cannot create the agent's mount point
  const hostile = join(w.root, "layers", "hostile");
  await mkdir(hostile);
  await writeFile(join(hostile, ".cleanroom"), "not a directory\n");
  await chown(hostile, w.idRange.hostBase, w.idRange.hostBase);
  const spec = w.spec({ lowerDirs: [...w.lowerDirs, hostile] });
  const err = await launchError(w, spec);
  assert.match(err.message, /runc run failed/);
  assert.match(err.message, /cleanroom-agent|not a directory/);
  assert.equal(typeof (err as { detail?: { runc_stderr?: unknown } }).detail?.runc_stderr, "string");
  await assertNothingLeft(w, spec.sandboxId);
});

test("launching an id that already exists fails and leaves the running sandbox alone", async (t) => {
  const w = await testWorld(t);
  const spec = w.spec();
  const first = await w.backend.launch(spec);
  const err = await launchError(w, spec);
  assert.match(err.message, /already exists/);
  assert.equal(await w.backend.state(spec.sandboxId), "running");
  assert.ok((await firstBytesFromAgent(first.agentSocketPath)).length > 0);
  await w.backend.destroy(spec.sandboxId);
  await assertNothingLeft(w, spec.sandboxId);
});

test("destroy cleans a half-created sandbox: state dir and overlay mount, no runc container", async (t) => {
  const w = await testWorld(t);
  const id = newSandboxId();
  // what a daemon killed between the overlay mount and `runc run` leaves behind
  const dir = join(w.stateDir, "sandboxes", id);
  for (const d of ["upper", "work", "rootfs"]) await mkdir(join(dir, d), { recursive: true });
  const lower = [...w.lowerDirs].reverse().join(":");
  execFileSync("mount", ["-t", "overlay", "overlay", "-o", `lowerdir=${lower},upperdir=${dir}/upper,workdir=${dir}/work`, join(dir, "rootfs")]);
  t.after(() => {
    try {
      execFileSync("umount", ["-l", join(dir, "rootfs")], { stdio: "ignore" });
    } catch {
      // already unmounted by the backend
    }
  });
  // and a runc state dir from a `runc run` killed before it wrote its state
  await mkdir(join(w.runcRoot, id), { recursive: true });

  assert.deepEqual(await w.backend.listSandboxIds(), [id]);
  assert.equal(await w.backend.state(id), "stopped");
  await w.backend.destroy(id);
  await assertNothingLeft(w, id);
});

test("after a daemon crash a fresh backend finds the orphan and destroys it from disk alone", async (t) => {
  const w = await testWorld(t);
  const spec = w.spec();
  await w.backend.launch(spec);
  // the "restarted daemon": a new backend instance over the same dirs, with no memory of the launch
  const restarted = createLinuxBackend({ stateDir: w.stateDir, runDir: w.runDir, agentPath: testAgentPath(), idRange: w.idRange });
  assert.deepEqual(await restarted.listSandboxIds(), [spec.sandboxId]);
  assert.equal(await restarted.state(spec.sandboxId), "running");
  assert.ok((await firstBytesFromAgent(restarted.agentSocketPath(spec.sandboxId))).length > 0, "the agent socket survives the daemon");
  await restarted.destroy(spec.sandboxId);
  await assertNothingLeft(w, spec.sandboxId);
  assert.doesNotMatch(runcCli(w.runcRoot, ["list", "-q"]), new RegExp(spec.sandboxId));
});

test("an image with more layers than fit into one page of absolute paths still mounts", async (t) => {
  const w = await testWorld(t);
  const store = join(w.root, "layers", "sha256");
  const layers: string[] = [];
  for (let i = 0; i < 52; i++) {
    const dir = join(store, i.toString(16).padStart(64, "0"));
    await mkdir(join(dir, "etc"), { recursive: true });
    await writeFile(join(dir, "etc", "layer"), `layer-${i}\n`);
    for (const p of [dir, join(dir, "etc"), join(dir, "etc", "layer")]) await chown(p, w.idRange.hostBase, w.idRange.hostBase);
    layers.push(dir);
  }
  await chmod(store, 0o711);
  const absoluteBytes = layers.join(":").length + w.lowerDirs[0]!.length;
  assert.ok(absoluteBytes > 4096, `the absolute lowerdir list is ${absoluteBytes} bytes`);
  const spec = w.spec({ lowerDirs: [w.lowerDirs[0]!, ...layers] });
  await w.backend.launch(spec);
  assert.equal(runcCli(w.runcRoot, ["exec", spec.sandboxId, "/bin/cat", "/etc/layer"]).trim(), "layer-51");
  await w.backend.destroy(spec.sandboxId);
  await assertNothingLeft(w, spec.sandboxId);
});

test("a daemon killed with SIGKILL at any point of a launch leaks nothing once a new daemon reconciles", { timeout: 45_000 }, async (t) => {
  const w = await testWorld(t);
  const launcher = join(import.meta.dirname, "crash-launcher.ts");
  for (const killAfterMs of [0, 15, 30, 45, 60, 90, 150]) {
    const id = newSandboxId();
    const child = spawn(process.execPath, [launcher, w.stateDir, w.runDir, testAgentPath(), id, ...w.lowerDirs], { stdio: ["ignore", "pipe", "inherit"] });
    const exited = new Promise((r) => child.once("exit", r));
    t.after(() => child.kill("SIGKILL"));
    await Promise.race([new Promise((r) => child.stdout.once("data", r)), exited]);
    await new Promise((r) => setTimeout(r, killAfterMs));
    child.kill("SIGKILL");
    await exited;
    // a `runc run` the dead daemon started finishes on its own (the restarted daemon comes up later than that)
    await waitForNoRunc(w.runcRoot);
    const restarted = createLinuxBackend({ stateDir: w.stateDir, runDir: w.runDir, agentPath: testAgentPath(), idRange: w.idRange });
    for (const orphan of await restarted.listSandboxIds()) await restarted.destroy(orphan);
    await assertNothingLeft(w, id);
  }
});

/** Waits until no runc process works on `runcRoot` (found by its command line in /proc). */
async function waitForNoRunc(runcRoot: string): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    let busy = false;
    for (const pid of await readdir("/proc")) {
      if (!/^\d+$/.test(pid)) continue;
      const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
      if (cmdline.includes(`\0${runcRoot}\0`)) busy = true;
    }
    if (!busy) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`runc still running on ${runcRoot}`);
}
