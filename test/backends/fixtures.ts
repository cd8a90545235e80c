import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, copyFile, lchown, mkdir, mkdtemp, readFile, readdir, rm, symlink, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestContext } from "node:test";
import assert from "node:assert/strict";
import { hostPaths, sandboxIdRange, type IdRange } from "../../src/config/index.ts";
import { createLinuxBackend, type Backend, type LaunchSpec } from "../../src/backends/index.ts";

export const busyboxPath = "/bin/busybox";
const applets = ["sh", "cat", "ls", "id", "sleep", "echo", "unshare", "mount", "ps", "touch", "mkdir", "rm", "hostname", "nsenter", "grep", "ip"];

/**
 * The agent the tests launch: the real one built by `bash agent/build.sh`. CLEANROOM_TEST_AGENT may
 * point elsewhere only while developing.
 */
export function testAgentPath(): string {
  const path = process.env.CLEANROOM_TEST_AGENT ?? hostPaths().agentPath;
  if (!existsSync(path)) throw new Error(`agent binary ${path} missing: build it with \`bash agent/build.sh\``);
  return path;
}

export interface TestWorld {
  root: string;
  stateDir: string;
  runDir: string;
  runcRoot: string;
  idRange: IdRange;
  backend: Backend;
  /** a busybox rootfs layer plus a small layer on top, lowest first */
  lowerDirs: string[];
  spec(overrides?: Partial<LaunchSpec>): LaunchSpec;
}

/** A temp state/run dir, an image of two layers (busybox, then a marker file), and a backend on them; removed in t.after. */
export async function testWorld(t: TestContext, opts: { agentPath?: string } = {}): Promise<TestWorld> {
  const root = await mkdtemp(join(tmpdir(), "cleanroom-backend-"));
  // mkdtemp makes 0700: the sandbox's root (an unprivileged host uid) must walk through it
  await chmod(root, 0o711);
  const stateDir = join(root, "state");
  const runDir = join(root, "run");
  const idRange = sandboxIdRange;
  const backend = createLinuxBackend({ stateDir, runDir, agentPath: opts.agentPath ?? testAgentPath(), idRange });
  t.after(async () => {
    for (const id of await backend.listSandboxIds()) await backend.destroy(id).catch(() => {});
    await releaseLeftovers(root, join(runDir, "runc"));
    await rm(root, { recursive: true, force: true });
  });
  const base = await busyboxLayer(join(root, "layers", "base"), idRange.hostBase);
  const top = join(root, "layers", "top");
  await mkdir(join(top, "etc"), { recursive: true });
  await writeFile(join(top, "etc", "layer"), "top\n");
  await chownTree(top, idRange.hostBase);
  const lowerDirs = [base, top];
  return {
    root,
    stateDir,
    runDir,
    runcRoot: join(runDir, "runc"),
    idRange,
    backend,
    lowerDirs,
    spec: (overrides = {}) => ({
      sandboxId: newSandboxId(),
      lowerDirs,
      imageConfig: { env: ["PATH=/bin", "IMAGE_VAR=1"], workingDir: "/", user: "" },
      resources: { vcpus: 1, memoryMiB: 256, pidsLimit: 128 },
      ...overrides,
    }),
  };
}

/**
 * Independent of the backend under test (which may be the thing that is broken): force-delete runc
 * containers in our runc root and lazily unmount anything mounted under `root`, so rm never recurses
 * into a live overlay.
 */
async function releaseLeftovers(root: string, runcRoot: string): Promise<void> {
  for (const id of await readdir(runcRoot).catch(() => [])) {
    try {
      execFileSync("runc", ["--root", runcRoot, "delete", "--force", id], { stdio: "ignore", timeout: 30_000 });
    } catch {
      // not a container any more
    }
  }
  const mounts = (await readFile("/proc/self/mountinfo", "utf8")).split("\n").map((l) => l.split(" ")[4] ?? "");
  for (const m of mounts.filter((m) => m.startsWith(root + "/")).reverse()) {
    try {
      execFileSync("umount", ["-l", m], { stdio: "ignore" });
    } catch {
      // gone already
    }
  }
}

/** A rootfs with busybox and a few applet links, owned by the shifted root like an unpacked layer. */
export async function busyboxLayer(dir: string, hostRoot: number): Promise<string> {
  for (const d of ["bin", "etc", "proc", "dev", "sys", "root"]) await mkdir(join(dir, d), { recursive: true });
  await mkdir(join(dir, "tmp"), { recursive: true, mode: 0o1777 });
  await chmod(join(dir, "tmp"), 0o1777);
  await copyFile(busyboxPath, join(dir, "bin", "busybox"));
  await chmod(join(dir, "bin", "busybox"), 0o755);
  for (const a of applets) await symlink("busybox", join(dir, "bin", a));
  await writeFile(join(dir, "etc", "layer"), "base\n");
  await writeFile(join(dir, "etc", "passwd"), "root:x:0:0:root:/root:/bin/sh\n");
  await chownTree(dir, hostRoot);
  return dir;
}

async function chownTree(dir: string, id: number): Promise<void> {
  await lchown(dir, id, id);
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) await lchown(join(e.parentPath, e.name), id, id);
}

export function newSandboxId(): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  return Array.from({ length: 12 }, () => alphabet[Math.floor(Math.random() * alphabet.length)]).join("");
}

/** Asserts that sandbox `id` holds nothing on the host, checked from the host's side (not the backend's). */
export async function assertNothingLeft(w: TestWorld, id: string): Promise<void> {
  assert.ok(!existsSync(join(w.stateDir, "sandboxes", id)), "no state dir");
  assert.ok(!existsSync(join(w.runcRoot, id)), "no runc state");
  assert.ok(!(await readFile("/proc/self/mountinfo", "utf8")).includes(`/sandboxes/${id}/`), "no mount");
  for (const h of await readdir("/sys/fs/cgroup")) assert.ok(!existsSync(join("/sys/fs/cgroup", h, "cleanroom", id)), `no cgroup in ${h}`);
  assert.ok(!existsSync(join("/sys/fs/cgroup", "cleanroom", id)), "no cgroup (v2)");
  assert.ok(!(await w.backend.listSandboxIds()).includes(id));
  assert.equal(await w.backend.state(id), "missing");
}

/** Connects to the agent socket and resolves with the first bytes the agent sends (its HELLO). */
export function firstBytesFromAgent(socketPath: string, timeoutMs = 5_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const c = connect(socketPath);
    const timer = setTimeout(() => {
      c.destroy();
      reject(new Error(`no bytes from the agent on ${socketPath} within ${timeoutMs} ms`));
    }, timeoutMs);
    c.once("data", (d: Buffer) => {
      clearTimeout(timer);
      c.destroy();
      resolve(d);
    });
    c.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** `runc --root <root> …` run by the test itself (independent of the backend's code). */
export function runcCli(runcRoot: string, args: string[]): string {
  return execFileSync("runc", ["--root", runcRoot, ...args], { encoding: "utf8", timeout: 30_000, stdio: ["ignore", "pipe", "pipe"] });
}
