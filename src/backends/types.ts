import type { BackendName, IdRange } from "../config/index.ts";
import type { Logger } from "../observability/index.ts";

export type { BackendName };

/** What a backend can enforce, e.g. `"network.default_deny": true`; launch fails closed on a missing one. */
export type CapabilityMap = Record<string, boolean>;

export interface SandboxResources {
  vcpus: number;
  memoryMiB: number;
  pidsLimit: number;
}

export interface LaunchSpec {
  /** /^[a-z0-9]{12}$/ */
  sandboxId: string;
  /** image layer dirs, LOWEST FIRST, already unpacked with ids shifted into the sandbox range */
  lowerDirs: string[];
  imageConfig: { env: string[]; workingDir: string; user: string };
  resources: SandboxResources;
  hostname?: string;
  /**
   * Join this network namespace (e.g. `/run/netns/cr-<id>` from network/) instead of creating an empty one.
   * It belongs to the host's user namespace, so the sandbox cannot reconfigure it, and cannot mount a
   * sysfs for it either: /sys is then the host's, read-only, with its network and cgroup views masked.
   */
  networkNamespacePath?: string;
  /** contents of the sandbox's /etc/resolv.conf (network/ renders it: its DNS policy server); bind-mounted read-only */
  resolvConf?: string;
  /** more /etc/hosts entries, name → IPv4 (e.g. gateway.cleanroom.internal → the sandbox's host address) */
  extraHosts?: Record<string, string>;
}

export interface LaunchedSandbox {
  agentSocketPath: string;
  initPid: number;
}

export interface ProbeCheck {
  name: string;
  ok: boolean;
  detail: string;
}

export interface BackendProbe {
  backend: BackendName;
  usable: boolean;
  checks: ProbeCheck[];
  capabilities: CapabilityMap;
}

/** A sandbox's own writes since launch: guest path → a signature that changes whenever the entry does. */
export interface WriteScan {
  entries: Map<string, string>;
  /** the scan stopped at its entry limit: what it did not see cannot be vouched for */
  truncated: boolean;
}

export interface Backend {
  readonly name: BackendName;
  capabilities(): CapabilityMap;
  probe(): Promise<BackendProbe>;
  /** All-or-nothing: on any failure every host resource taken is released, then runtime_launch_failed. */
  launch(spec: LaunchSpec): Promise<LaunchedSandbox>;
  state(sandboxId: string): Promise<"running" | "stopped" | "missing">;
  agentSocketPath(sandboxId: string): string;
  /** Idempotent; safe on partial state and after a daemon crash (derives everything from disk and runc). */
  destroy(sandboxId: string): Promise<void>;
  /** Lists what the sandbox has written since launch, with the sandbox frozen while it is read. */
  scanWrites(sandboxId: string, maxEntries: number): Promise<WriteScan>;
  /** Freezes (true) or thaws every process of the sandbox; a frozen sandbox uses no CPU and keeps its memory. */
  setSuspended(sandboxId: string, suspended: boolean): Promise<void>;
  /**
   * Copies what the sandbox has written since launch into `dest` (an empty dir) as an overlay layer (whiteouts and
   * opaque dirs kept), with the sandbox frozen while it is read. Stacked on the same lower layers, it gives back
   * the sandbox's filesystem.
   */
  copyWrites(sandboxId: string, dest: string): Promise<void>;
  /** Ids that still hold any host resource (runc container, overlay mount, state dir): reconcile's orphan list. */
  listSandboxIds(): Promise<string[]>;
}

export interface LinuxBackendOptions {
  /** durable state; sandboxes live in `<stateDir>/sandboxes/<id>/` */
  stateDir: string;
  /** runtime files; runc's root is `<runDir>/runc` */
  runDir: string;
  /** the static cleanroom-agent binary bind-mounted read-only into every sandbox */
  agentPath: string;
  /** host uid/gid range that root inside the sandbox maps onto */
  idRange: IdRange;
  logger?: Logger;
  /** used for any resource a launch spec leaves at 0 */
  defaults?: Partial<SandboxResources>;
}
