import type { IdRange } from "../../config/index.ts";
import type { SandboxResources } from "../types.ts";
import { defaultSeccompProfile, type SeccompProfile } from "./seccomp-profile.ts";

/** The subset of the OCI runtime spec (1.0.2) that Cleanroom writes. */
export interface OciSpec {
  ociVersion: "1.0.2-dev";
  process: {
    terminal: false;
    user: { uid: number; gid: number; additionalGids?: number[] };
    args: string[];
    env: string[];
    cwd: string;
    capabilities: { bounding: string[]; effective: string[]; permitted: string[]; inheritable: string[]; ambient: string[] };
    rlimits: { type: string; hard: number; soft: number }[];
    noNewPrivileges: boolean;
    oomScoreAdj?: number;
  };
  root: { path: string; readonly: boolean };
  hostname: string;
  mounts: { destination: string; type: string; source: string; options: string[] }[];
  linux: {
    uidMappings: IdMapping[];
    gidMappings: IdMapping[];
    namespaces: { type: "pid" | "network" | "ipc" | "uts" | "mount" | "user" | "cgroup"; path?: string }[];
    resources: {
      devices: { allow: boolean; access: string }[];
      memory: { limit: number; swap: number };
      cpu: { quota: number; period: number };
      pids: { limit: number };
    };
    cgroupsPath: string;
    seccomp: SeccompProfile;
    maskedPaths: string[];
    readonlyPaths: string[];
  };
}

interface IdMapping {
  containerID: number;
  hostID: number;
  size: number;
}

/** Where the agent binary appears inside every sandbox. */
export const agentPathInSandbox = "/.cleanroom/cleanroom-agent";

/** Docker's default capability set: enough for package managers and builds, none that reach the host. */
export const sandboxCapabilities: readonly string[] = [
  "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID",
  "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_SETFCAP", "CAP_AUDIT_WRITE",
];

export const maskedPaths: readonly string[] = [
  "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
  "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
];

/**
 * Masked on top of `maskedPaths` when /sys is the host's (a joined netns): the host's interfaces (other
 * sandboxes' veths among them), its cgroup tree (every sandbox's id) and the kernel's debug and security views.
 */
export const hostSysMaskedPaths: readonly string[] = [
  "/sys/class/net", "/sys/devices/virtual/net", "/sys/fs/cgroup", "/sys/fs/bpf", "/sys/fs/pstore", "/sys/fs/fuse",
  "/sys/kernel/debug", "/sys/kernel/tracing", "/sys/kernel/security", "/sys/kernel/config",
];

export const readonlyPaths: readonly string[] = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

export interface SandboxSpecInput {
  sandboxId: string;
  rootfsPath: string;
  agentHostPath: string;
  imageEnv: readonly string[];
  hostname: string;
  resources: SandboxResources;
  idRange: IdRange;
  /** RLIMIT_NOFILE for the sandbox; runc cannot raise it above the daemon's hard limit */
  nofileLimit: number;
  /** join this netns instead of a new, empty one */
  networkNamespacePath?: string;
  /** host files bind-mounted read-only over the sandbox's /etc/hosts and (when set) /etc/resolv.conf */
  etcFiles?: { hosts: string; resolvConf?: string };
}

/** Renders the OCI bundle config of a sandbox whose PID 1 is the agent listening on fd 3. */
export function renderSandboxSpec(input: SandboxSpecInput): OciSpec {
  const mapping: IdMapping[] = [{ containerID: 0, hostID: input.idRange.hostBase, size: input.idRange.size }];
  const caps = [...sandboxCapabilities];
  const memoryBytes = Math.round(input.resources.memoryMiB * 1024 * 1024);
  const period = 100_000;
  return {
    ociVersion: "1.0.2-dev",
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      args: [agentPathInSandbox],
      env: agentEnv(input.imageEnv),
      cwd: "/",
      capabilities: { bounding: caps, effective: caps, permitted: caps, inheritable: [], ambient: [] },
      rlimits: [{ type: "RLIMIT_NOFILE", hard: input.nofileLimit, soft: input.nofileLimit }],
      noNewPrivileges: true,
    },
    root: { path: input.rootfsPath, readonly: false },
    hostname: input.hostname,
    mounts: [...sandboxMounts(input.agentHostPath, input.networkNamespacePath !== undefined), ...etcMounts(input.etcFiles)],
    linux: {
      uidMappings: mapping,
      gidMappings: mapping.map((m) => ({ ...m })),
      // without a path, a fresh network namespace holds only loopback; with one, network/ has wired a veth into it
      namespaces: [
        { type: "user" },
        { type: "mount" },
        { type: "pid" },
        { type: "ipc" },
        { type: "uts" },
        input.networkNamespacePath === undefined ? { type: "network" } : { type: "network", path: input.networkNamespacePath },
        { type: "cgroup" },
      ],
      resources: {
        devices: [{ allow: false, access: "rwm" }],
        memory: { limit: memoryBytes, swap: memoryBytes },
        cpu: { quota: Math.max(1000, Math.round(input.resources.vcpus * period)), period },
        pids: { limit: input.resources.pidsLimit },
      },
      cgroupsPath: sandboxCgroupPath(input.sandboxId),
      seccomp: defaultSeccompProfile(),
      maskedPaths: input.networkNamespacePath === undefined ? [...maskedPaths] : [...maskedPaths, ...hostSysMaskedPaths],
      readonlyPaths: [...readonlyPaths],
    },
  };
}

/**
 * The sandbox's cgroup in every hierarchy (cgroupfs driver). Absolute on purpose: runc nests a relative
 * path under the daemon's own cgroup of each hierarchy (here the memory one is /process_api/<hash>), so
 * its place would depend on where the daemon runs and a restarted daemon could not find it again.
 */
export function sandboxCgroupPath(sandboxId: string): string {
  return `/cleanroom/${sandboxId}`;
}

/**
 * The image's env, then ours. An image must not steer the agent: its CLEANROOM_AGENT_* entries are dropped.
 * A missing PATH gets the usual default.
 */
function agentEnv(imageEnv: readonly string[]): string[] {
  const env = imageEnv.filter((e) => !e.startsWith("CLEANROOM_AGENT_"));
  if (!env.some((e) => e.startsWith("PATH="))) env.unshift(defaultPath);
  env.push("CLEANROOM_AGENT_LISTEN_FD=3");
  return env;
}

/**
 * sysfs can only be mounted by someone privileged over the netns; a joined netns belongs to the host's user
 * namespace, not the sandbox's. Then /sys is a recursive read-only bind of the host's (the kernel refuses a
 * non-recursive bind of a tree with locked submounts), and hostSysMaskedPaths hides what a fresh sysfs would not show.
 */
function sysMount(hostSys: boolean): OciSpec["mounts"][number] {
  return hostSys
    ? { destination: "/sys", type: "bind", source: "/sys", options: ["rbind", "ro", "nosuid", "noexec", "nodev"] }
    : { destination: "/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", "ro"] };
}

/** The daemon's /etc/hosts and /etc/resolv.conf: read-only, so the sandbox cannot point DNS elsewhere through them. */
function etcMounts(files: SandboxSpecInput["etcFiles"]): OciSpec["mounts"] {
  if (!files) return [];
  const options = ["bind", "ro", "nosuid", "nodev", "noexec"];
  return [
    { destination: "/etc/hosts", type: "bind", source: files.hosts, options },
    ...(files.resolvConf ? [{ destination: "/etc/resolv.conf", type: "bind", source: files.resolvConf, options }] : []),
  ];
}

function sandboxMounts(agentHostPath: string, hostSys: boolean): OciSpec["mounts"] {
  return [
    { destination: "/proc", type: "proc", source: "proc", options: ["nosuid", "noexec", "nodev"] },
    { destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["nosuid", "strictatime", "mode=755", "size=65536k"] },
    {
      destination: "/dev/pts",
      type: "devpts",
      source: "devpts",
      options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
    },
    { destination: "/dev/shm", type: "tmpfs", source: "shm", options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
    { destination: "/dev/mqueue", type: "mqueue", source: "mqueue", options: ["nosuid", "noexec", "nodev"] },
    sysMount(hostSys),
    // the agent comes from the host, read-only: the sandbox can run it but never replace it
    { destination: agentPathInSandbox, type: "bind", source: agentHostPath, options: ["bind", "ro", "nosuid", "nodev"] },
  ];
}
