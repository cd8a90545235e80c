import type { OciSpec } from "./oci-spec.ts";
import type { SandboxLayout } from "./sandbox-layout.ts";

/**
 * What differs between the OCI runtimes that run the same sandbox bundle (runc for `linux`, runsc for `gvisor`):
 * how the agent is reached, how the container is started, frozen, found and removed. Everything else (overlay
 * rootfs, bundle config, cgroups, teardown order, write scans) is the shared OCI backend's.
 */
export interface OciRuntime {
  readonly backend: "linux" | "gvisor";
  /** the runtime's executable, e.g. `runc`; names it in errors */
  readonly binary: string;
  /** the runtime's own state root under the daemon's run dir, so its `list` elsewhere never sees our sandboxes */
  readonly root: string;
  /** host path the daemon connects to for the sandbox's agent */
  agentSocketPath(layout: SandboxLayout): string;
  /** the runtime's changes to the rendered bundle config (pure) */
  adaptSpec(spec: OciSpec, layout: SandboxLayout): OciSpec;
  /** host files the runtime needs before it starts (run alongside the rootfs mount) */
  prepare(layout: SandboxLayout): Promise<PreparedLaunch>;
  /** starts the container detached; the runtime's and the container's stdio go to `logFd` */
  run(launch: RuntimeLaunch, timeoutMs: number): Promise<RuntimeRunResult>;
  /** the started container's init pid on the host, undefined when the runtime has no such container */
  initPid(id: string): Promise<number | undefined>;
  /** undefined when the runtime holds no state for the container */
  state(id: string): Promise<"running" | "stopped" | undefined>;
  /** freezes (true) or thaws every process of the container */
  setFrozen(id: string, frozen: boolean): Promise<void>;
  /** ends every process of the container and waits for them; nothing to do when none runs */
  stop(id: string): Promise<void>;
  /** removes the runtime's state of a stopped container; idempotent */
  remove(id: string): Promise<void>;
  /** ids the runtime holds state for */
  listIds(): Promise<string[]>;
}

export interface PreparedLaunch {
  /** a descriptor the runtime hands to the container (runc: the agent's listening socket as fd 3) */
  fd?: number;
  /** releases the daemon's side of what prepare made (after run) */
  close(): Promise<void>;
}

export interface RuntimeLaunch {
  id: string;
  layout: SandboxLayout;
  logFd: number;
  prepared: PreparedLaunch;
  /** the netns the sandbox joins (network/'s), when it has one */
  networkNamespacePath?: string;
}

export interface RuntimeRunResult {
  code: number | null;
  durationMs: number;
  error?: string;
}
