import { chmod, chown, mkdir, open, readdir, stat, writeFile, type FileHandle } from "node:fs/promises";
import { join, resolve } from "node:path";
import { CleanroomError, messageOf } from "../../errors/index.ts";
import { silentLogger } from "../../observability/index.ts";
import type { Backend, BackendProbe, CapabilityMap, LaunchSpec, LaunchedSandbox, LinuxBackendOptions } from "../types.ts";
import { agentBinaryProblem, hardNofileLimit, pathExists, untraversableAncestors } from "./host-access.ts";
import { checkLaunchSpec, type CheckedLaunch } from "./launch-spec.ts";
import type { OciRuntime, PreparedLaunch } from "./oci-runtime.ts";
import { renderSandboxSpec } from "./oci-spec.ts";
import { mountOverlay, planOverlayMount, readMounts, type OverlayMountPlan } from "./overlay.ts";
import { probeLinux } from "./probe.ts";
import { runcRuntime } from "./runc-runtime.ts";
import { sandboxesDir, sandboxIdPattern, sandboxLayout, type SandboxLayout } from "./sandbox-layout.ts";
import { teardownSandbox } from "./teardown.ts";
import { copyLayer, scanUpperDir } from "./upper-scan.ts";

const runcRunTimeoutMs = 30_000;
const maxLogExcerptBytes = 16 * 1024;
const maxNofile = 1_048_576;

/** What the linux backend enforces today; egress allowlists arrive with network/. */
export const linuxCapabilities: Readonly<CapabilityMap> = {
  "network.default_deny": true,
  "network.allowlist_egress": false,
  "sandbox.suspend": true,
  "sandbox.docker": false,
  "sandbox.resources.vcpus": true,
  "sandbox.resources.memory": true,
  "sandbox.resources.pids": true,
  "sandbox.user_namespace": true,
  "sandbox.seccomp": true,
};

/** The `linux` backend: runc with its own root, a user namespace per sandbox, rootfs = overlay of image layers. */
export function createLinuxBackend(options: LinuxBackendOptions): Backend {
  return createOciBackend(options, (opts) => ({
    runtime: runcRuntime(join(opts.runDir, "runc")),
    capabilities: linuxCapabilities,
    probe: () => probeLinux(opts, { ...linuxCapabilities }),
  }));
}

/** What makes an OCI backend one backend rather than another: its runtime, what it enforces, its doctor probe. */
export interface OciBackendParts {
  runtime: OciRuntime;
  capabilities: Readonly<CapabilityMap>;
  probe(): Promise<BackendProbe>;
}

/**
 * A backend that runs the sandbox bundle (overlay rootfs of image layers, config.json, cgroups) with an OCI runtime;
 * `partsFor` gets the options with absolute paths. Used by `linux` (runc) and `gvisor` (runsc).
 */
export function createOciBackend(options: LinuxBackendOptions, partsFor: (opts: LinuxBackendOptions) => OciBackendParts): Backend {
  // mountinfo and the runtimes speak absolute, normalized paths
  const opts = { ...options, stateDir: resolve(options.stateDir), runDir: resolve(options.runDir), agentPath: resolve(options.agentPath) };
  const logger = opts.logger ?? silentLogger();
  const { runtime, capabilities, probe } = partsFor(opts);
  let hostReady: Promise<{ nofile: number }> | undefined;

  /**
   * Once per backend: our dirs exist and the sandbox's root can walk to them. `sandboxes/` and each
   * sandbox dir are root:<sandbox root gid> 0710, so runc (as the sandbox's root) gets through while
   * other host users cannot browse sandbox filesystems.
   */
  const prepareHost = () =>
    (hostReady ??= (async () => {
      const sandboxes = sandboxesDir(opts.stateDir);
      await mkdir(sandboxes, { recursive: true, mode: 0o700 });
      await Promise.all([
        addTraverseBit(opts.stateDir),
        chown(sandboxes, 0, opts.idRange.hostBase).then(() => chmod(sandboxes, 0o710)),
        mkdir(runtime.root, { recursive: true, mode: 0o700 }),
      ]);
      const closed = await untraversableAncestors(sandboxes);
      if (closed.length) throw new Error(`the sandbox's root (host uid ${opts.idRange.hostBase}) cannot reach ${sandboxes}: chmod o+x ${closed.join(" ")}`);
      return { nofile: Math.min(await hardNofileLimit(), maxNofile) };
    })().catch((err) => {
      hostReady = undefined;
      throw err;
    }));

  const destroy = async (sandboxId: string): Promise<void> => {
    checkId(sandboxId);
    const started = performance.now();
    const problems = await teardownSandbox(runtime, sandboxId, sandboxLayout(opts.stateDir, sandboxId));
    if (problems.length) {
      throw new CleanroomError("internal", `could not fully destroy sandbox ${sandboxId}: ${problems.join("; ")}`, { sandbox_id: sandboxId, problems });
    }
    logger.debug({ sandbox_id: sandboxId, destroy_ms: Math.round(performance.now() - started) }, "sandbox destroyed");
  };

  const launch = async (spec: LaunchSpec): Promise<LaunchedSandbox> => {
    const started = performance.now();
    let checked: CheckedLaunch;
    let nofile: number;
    let plan: OverlayMountPlan;
    const layout = sandboxLayout(opts.stateDir, spec.sandboxId);
    // everything that can be refused is refused before the first byte is written
    try {
      checked = checkLaunchSpec(spec, opts.defaults);
      plan = planOverlayMount(checked.lowerDirs, layout.upper, layout.work);
      [{ nofile }] = await Promise.all([prepareHost(), checkHostInputs(opts.agentPath, checked.lowerDirs)]);
    } catch (err) {
      throw launchFailed(spec.sandboxId, messageOf(err));
    }
    try {
      await mkdir(layout.dir, { mode: 0o700 });
    } catch (err) {
      const why = (err as NodeJS.ErrnoException).code === "EEXIST" ? "a sandbox with this id already exists" : messageOf(err);
      throw launchFailed(spec.sandboxId, why);
    }
    // from here on every failure releases what was taken: teardown derives it all from disk
    try {
      const launched = await startSandbox(layout, spec.sandboxId, checked, plan, nofile);
      logger.info(
        {
          sandbox_id: spec.sandboxId,
          init_pid: launched.initPid,
          mount_ms: round(launched.mountMs),
          runc_run_ms: round(launched.runcRunMs),
          launch_ms: round(performance.now() - started),
        },
        "sandbox launched",
      );
      return { agentSocketPath: runtime.agentSocketPath(layout), initPid: launched.initPid };
    } catch (err) {
      const problems = await teardownSandbox(runtime, spec.sandboxId, layout);
      if (problems.length) logger.error({ sandbox_id: spec.sandboxId, problems }, "cleanup after failed launch left resources");
      throw launchFailed(spec.sandboxId, messageOf(err), {
        ...(err instanceof RuncRunError ? { runc_stderr: err.runcOutput } : {}),
        ...(problems.length ? { cleanup_problems: problems } : {}),
      });
    }
  };

  const startSandbox = async (layout: SandboxLayout, id: string, checked: CheckedLaunch, plan: OverlayMountPlan, nofile: number) => {
    const hostRoot = opts.idRange.hostBase;
    await chown(layout.dir, 0, hostRoot);
    await Promise.all([chmod(layout.dir, 0o710), mkdir(layout.upper, { mode: 0o755 }), mkdir(layout.work, { mode: 0o700 }), mkdir(layout.rootfs, { mode: 0o755 })]);
    // root inside the sandbox owns "/" (the upper dir's root) and may write anywhere the image lets root write
    await Promise.all([chmod(layout.upper, 0o755), chown(layout.upper, hostRoot, hostRoot), chown(layout.work, hostRoot, hostRoot)]);
    const spec = runtime.adaptSpec(renderSandboxSpec({
      sandboxId: id,
      rootfsPath: layout.rootfs,
      agentHostPath: opts.agentPath,
      imageEnv: checked.env,
      hostname: checked.hostname,
      resources: checked.resources,
      idRange: opts.idRange,
      nofileLimit: nofile,
      ...(checked.networkNamespacePath !== undefined ? { networkNamespacePath: checked.networkNamespacePath } : {}),
      etcFiles: { hosts: layout.hostsFile, ...(checked.resolvConf !== undefined ? { resolvConf: layout.resolvConfFile } : {}) },
    }), layout);
    let prepared: PreparedLaunch | undefined;
    let log: FileHandle | undefined;
    try {
      const mountStarted = performance.now();
      let mountMs = 0;
      const results = await Promise.allSettled([
        mountOverlay(plan, layout.rootfs).then(() => (mountMs = performance.now() - mountStarted)),
        writeFile(layout.config, JSON.stringify(spec), { mode: 0o600 }),
        writeFile(layout.hostsFile, hostsFileFor(checked.hostname, checked.extraHosts), { mode: 0o644 }),
        ...(checked.resolvConf !== undefined ? [writeFile(layout.resolvConfFile, checked.resolvConf, { mode: 0o644 })] : []),
        runtime.prepare(layout).then((p) => (prepared = p)),
        open(layout.agentLog, "a", 0o600).then((f) => (log = f)),
      ]);
      const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
      if (failed) throw failed.reason;
      if (!prepared || !log) throw new Error("agent socket or log not ready");
      const netns = checked.networkNamespacePath;
      const run = await runtime.run({ id, layout, logFd: log.fd, prepared, ...(netns !== undefined ? { networkNamespacePath: netns } : {}) }, runcRunTimeoutMs);
      const bin = runtime.binary;
      if (run.code !== 0) {
        const output = await readLogExcerpt(layout.agentLog);
        throw new RuncRunError(`${bin} run failed (${run.error ?? `exit ${run.code}`}): ${output || "no output"}`, output);
      }
      const initPid = await runtime.initPid(id);
      if (initPid === undefined) throw new Error(`${bin} run succeeded but ${bin} has no state for ${id}`);
      return { initPid, runcRunMs: run.durationMs, mountMs };
    } finally {
      await Promise.all([prepared?.close(), log?.close()]);
    }
  };

  const freeze = (sandboxId: string, frozen: boolean): Promise<void> => runtime.setFrozen(sandboxId, frozen);

  return {
    name: runtime.backend,
    capabilities: () => ({ ...capabilities }),
    probe,
    launch,
    destroy,
    agentSocketPath: (sandboxId) => {
      checkId(sandboxId);
      return runtime.agentSocketPath(sandboxLayout(opts.stateDir, sandboxId));
    },
    state: async (sandboxId) => {
      checkId(sandboxId);
      const runtimeState = await runtime.state(sandboxId);
      if (runtimeState) return runtimeState;
      // no container, but a state dir (e.g. after a reboot emptied the run dir): its upper dir is still there
      return (await pathExists(sandboxLayout(opts.stateDir, sandboxId).dir)) ? "stopped" : "missing";
    },
    setSuspended: async (sandboxId, suspended) => {
      checkId(sandboxId);
      await freeze(sandboxId, suspended);
    },
    scanWrites: async (sandboxId, maxEntries) => {
      checkId(sandboxId);
      await freeze(sandboxId, true);
      try {
        return await scanUpperDir(sandboxLayout(opts.stateDir, sandboxId).upper, maxEntries);
      } finally {
        await freeze(sandboxId, false);
      }
    },
    copyWrites: async (sandboxId, dest) => {
      checkId(sandboxId);
      await freeze(sandboxId, true);
      try {
        await copyLayer(sandboxLayout(opts.stateDir, sandboxId).upper, dest);
      } finally {
        await freeze(sandboxId, false);
      }
    },
    listSandboxIds: async () => {
      const ids = new Set<string>();
      const [runtimeIds, stateIds, mounts] = await Promise.all([
        runtime.listIds(),
        readdir(sandboxesDir(opts.stateDir)).catch(() => []),
        readMounts(),
      ]);
      for (const id of [...runtimeIds, ...stateIds]) if (sandboxIdPattern.test(id)) ids.add(id);
      const prefix = sandboxesDir(opts.stateDir) + "/";
      for (const m of mounts) {
        if (!m.mountPoint.startsWith(prefix)) continue;
        const [id, leaf, ...more] = m.mountPoint.slice(prefix.length).split("/");
        if (id && sandboxIdPattern.test(id) && leaf === "rootfs" && more.length === 0) ids.add(id);
      }
      return [...ids].sort();
    },
  };
}

/** Fails before touching anything when the agent or a layer is missing: mount's own message would not say which. */
async function checkHostInputs(agentPath: string, lowerDirs: readonly string[]): Promise<void> {
  const [agentProblem, layerStats] = await Promise.all([
    agentBinaryProblem(agentPath),
    Promise.all(lowerDirs.map((d) => stat(d).then((s) => s.isDirectory(), () => false))),
  ]);
  if (agentProblem) throw new Error(agentProblem);
  const missing = lowerDirs.filter((_, i) => !layerStats[i]);
  if (missing.length) throw new Error(`image layer dirs missing: ${missing.join(", ")}`);
}

/** `runc run` failed; its stderr (from the log file it shares with the agent) goes into the error detail. */
class RuncRunError extends Error {
  readonly runcOutput: string;
  constructor(message: string, runcOutput: string) {
    super(message);
    this.runcOutput = runcOutput;
  }
}

function checkId(sandboxId: string): void {
  if (!sandboxIdPattern.test(sandboxId)) {
    throw new CleanroomError("invalid_argument", `sandbox id ${JSON.stringify(sandboxId)} is not 12 characters of [a-z0-9]`);
  }
}

function launchFailed(sandboxId: string, why: string, detail: Record<string, unknown> = {}): CleanroomError {
  return new CleanroomError("runtime_launch_failed", `sandbox ${sandboxId}: launch failed: ${why}`, { sandbox_id: sandboxId, ...detail });
}

async function readLogExcerpt(path: string): Promise<string> {
  const f = await open(path, "r").catch(() => undefined);
  if (!f) return "";
  try {
    const { size } = await f.stat();
    const length = Math.min(size, maxLogExcerptBytes);
    const buf = Buffer.alloc(length);
    await f.read(buf, 0, length, size - length);
    return buf.toString("utf8").trim();
  } finally {
    await f.close();
  }
}

/** stateDir is the daemon's: only add the x bits runc needs, never take permissions away. */
async function addTraverseBit(dir: string): Promise<void> {
  const { mode } = await stat(dir);
  if ((mode & 0o001) === 0) await chmod(dir, (mode & 0o7777) | 0o011);
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}

/** The sandbox's /etc/hosts: loopback names, its own hostname, and what the daemon adds (the gateway's name). */
function hostsFileFor(hostname: string, extra: readonly [string, string][]): string {
  const lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback", `127.0.1.1\t${hostname}`, ...extra.map(([name, address]) => `${address}\t${name}`)];
  return `${lines.join("\n")}\n`;
}
