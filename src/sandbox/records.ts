import type { CompiledPolicy } from "../policy/index.ts";

/** Lifecycle states, named as Cleanroom's API names them. */
export type SandboxStatus =
  | "PROVISIONING" | "READY" | "STOPPING" | "STOPPED" | "FAILED" | "SUSPENDING" | "SUSPENDED" | "WAKING";

export type ExecutionStatus = "QUEUED" | "RUNNING" | "SUCCEEDED" | "FAILED" | "CANCELED" | "TIMED_OUT";

export interface SandboxResources {
  vcpus: number;
  memoryMiB: number;
  pidsLimit: number;
}

/** The principal a resource belongs to on a shared server (absent: made by a local caller over the socket). */
export interface ResourceOwner {
  principalId: string;
  scope: string;
}

export interface SandboxRecord {
  id: string;
  owner?: ResourceOwner;
  status: SandboxStatus;
  backend: string;
  imageRef: string;
  imageDigest: string;
  statusReason: string;
  createdAt: string;
  updatedAt: string;
  resources: SandboxResources;
  policyHash: string;
  dangerouslyAllowAll: boolean;
  labels: Record<string, string>;
  /** the compiled policy the sandbox was created with; immutable for its life */
  policy?: CompiledPolicy;
  /** the image's Env, WorkingDir and User: every execution's defaults */
  imageDefaults?: ImageDefaults;
  /** a warm-pool spare: not yet handed to anyone, hidden from the API */
  pooled?: boolean;
  /** the repository checked out at `path` before the sandbox became READY */
  repository?: RepositoryRecord;
  /** block cache entries whose layers this sandbox's rootfs stacks on the image (they must outlive it) */
  cacheEntries?: string[];
  /** the snapshot whose layer this sandbox's rootfs stacks (it must outlive the sandbox) */
  fromSnapshot?: string;
  /** how long its creation took, by step (a spare keeps those of its own creation) */
  createTimings?: SandboxCreateTimings;
}

/** The steps of a sandbox's creation that an execution in it waited for, in milliseconds. */
export interface SandboxCreateTimings {
  /** resolving the image and the layers its rootfs stacks */
  rootfsPrepMs: number;
  /** the sandbox's netns, veth and nftables rules */
  networkSetupMs: number;
  /** from launch until its agent answered */
  readyMs: number;
}

/** Where an execution's time went (`execution-observability.json`), in milliseconds. */
export interface ExecutionTimings {
  rootfsPrepMs: number;
  networkSetupMs: number;
  readyMs: number;
  /** the command's own run time */
  commandMs: number;
  /** from the execution request to the command's exit */
  totalMs: number;
}

/** A sandbox's repository: where it came from (an exact commit) and where it lives in the sandbox. */
export interface RepositoryRecord {
  /** canonical https URL, also the checkout's remote URL */
  remoteUrl: string;
  commit: string;
  /** checked out as this branch, tracking `<remoteName>/<branch>`; absent: detached at the commit */
  branch?: string;
  path: string;
  remoteName: string;
  submodules: boolean;
}

/** A sandbox's filesystem, frozen: its own writes as a layer over the image (and block layers) it was made from. */
export interface SnapshotRecord {
  id: string;
  /** the sandbox's owner, inherited */
  owner?: ResourceOwner;
  name: string;
  sandboxId: string;
  createdAt: string;
  backend: string;
  imageRef: string;
  imageDigest: string;
  imageDefaults?: ImageDefaults;
  policyHash: string;
  policy?: CompiledPolicy;
  repository?: RepositoryRecord;
  /** block cache entries under the sandbox's own writes: a restore stacks them again */
  cacheEntries: string[];
  /** bytes on the host's disk */
  diskBytes: number;
}

export interface ImageDefaults {
  env: string[];
  workingDir: string;
  user: string;
}

export interface ExecutionRecord {
  id: string;
  /** the sandbox's owner, inherited */
  owner?: ResourceOwner;
  sandboxId: string;
  status: ExecutionStatus;
  interactive: boolean;
  command: string[];
  cwd: string;
  tty: boolean;
  exitCode: number | null;
  signal: string;
  statusReason: string;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  stdoutBytes: number;
  stderrBytes: number;
  /** W3C trace id (32 hex digits): the caller's `traceparent`, else one of the daemon's own */
  traceId?: string;
  /** set once the execution finished */
  timings?: ExecutionTimings;
}

export interface SandboxEventRecord {
  sequence: number;
  sandboxId: string;
  time: string;
  type: string;
  message: string;
  reasonCode: string;
  attributes: Record<string, string>;
}

/** States in which a sandbox still holds host resources. */
export const LIVE_SANDBOX_STATUSES: readonly SandboxStatus[] = [
  "PROVISIONING", "READY", "STOPPING", "SUSPENDING", "SUSPENDED", "WAKING",
];

export const FINISHED_EXECUTION_STATUSES: readonly ExecutionStatus[] = ["SUCCEEDED", "FAILED", "CANCELED", "TIMED_OUT"];
