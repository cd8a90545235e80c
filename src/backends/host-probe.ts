import type { LinuxBackendOptions, ProbeCheck } from "./types.ts";
import { linuxCapabilities } from "./linux/backend.ts";
import { gvisorCapabilities } from "./gvisor/backend.ts";
import { checkRunscBoots } from "./gvisor/probe.ts";
import { bestRunscPlatform } from "./gvisor/runsc.ts";
import { probeLinux } from "./linux/probe.ts";
import { checkAgent } from "./probes/agent.ts";
import { fail, pass, warn, type BackendReport, type HostCheck, type HostReport } from "./probes/check.ts";
import { checkCgroups, checkNetworkNamespaces, checkNftables, checkOverlayfs } from "./probes/kernel.ts";
import { checkKvm } from "./probes/kvm.ts";
import { listenerChecks, type DaemonListener } from "./probes/listener.ts";
import { checkCrun, checkQemu, checkRunc, checkRunsc } from "./probes/runtimes.ts";
import { checkBaseImage, checkDiskSpace, checkStateDir, type DefaultImageLookup } from "./probes/storage.ts";

export interface HostProbeOptions extends Pick<LinuxBackendOptions, "stateDir" | "agentPath" | "idRange"> {
  /** the default base image; without it that check is left out */
  defaultImage?: DefaultImageLookup;
  /** the daemon's API listener; left out when doctor runs without a daemon */
  listener?: DaemonListener;
}

const NOT_IMPLEMENTED = "backend not implemented in this build";

/**
 * `cleanroom doctor`: every host prerequisite as pass/warn/fail with a fix hint, and which backends can run here.
 * Every probe is real (a mount, a namespace, a netlink transaction, an agent HELLO, a KVM VM) and cleans up after
 * itself; they run in parallel, each bounded by a timeout of 1.5 s.
 */
export async function probeHost(opts: HostProbeOptions): Promise<HostReport> {
  const [linux, runc, crun, runsc, runscBoot, qemu, kvm, cgroups, overlayfs, netns, nftables, agent, stateDir, disk, baseImage] = await Promise.all([
    probeLinux(opts, { ...linuxCapabilities }),
    checkRunc(),
    checkCrun(),
    checkRunsc(),
    checkGvisorBoot(),
    checkQemu(),
    checkKvm(),
    checkCgroups(),
    checkOverlayfs(opts.stateDir),
    checkNetworkNamespaces(),
    checkNftables(),
    checkAgent(opts.agentPath),
    checkStateDir(opts.stateDir, opts.idRange.hostBase),
    checkDiskSpace(opts.stateDir),
    opts.defaultImage ? checkBaseImage(opts.defaultImage) : undefined,
  ]);
  const userns = fromLinuxProbe(linux.checks, "user_namespaces", "sysctl -w user.max_user_namespaces=15000 (Debian kernels also need kernel.unprivileged_userns_clone=1)");
  const seccomp = fromLinuxProbe(linux.checks, "seccomp", "install a runc built with libseccomp (Debian's runc package is)");
  const linuxChecks = [runc, cgroups, userns, seccomp, overlayfs, netns, nftables, agent, stateDir, disk];
  const checks = [
    privilegesCheck(),
    runc, crun, runsc, qemu, kvm,
    cgroups, userns, seccomp, overlayfs, netns, nftables,
    agent, stateDir, disk,
    ...(baseImage ? [baseImage] : []),
    ...(opts.listener ? listenerChecks(opts.listener) : []),
  ];
  const backends: BackendReport[] = [
    backendReport("linux", linuxChecks, { ...linuxCapabilities }),
    backendReport("gvisor", [required(runsc), runscBoot, cgroups, overlayfs, netns, nftables, agent, stateDir, disk], { ...gvisorCapabilities }),
    backendReport("qemu", [required(qemu), kvm, fail("qemu_backend", NOT_IMPLEMENTED, "use --backend linux")], {}),
  ];
  return { checks, backends };
}

function backendReport(backend: BackendReport["backend"], checks: HostCheck[], capabilities: BackendReport["capabilities"]): BackendReport {
  return { backend, usable: checks.every((c) => c.status !== "fail"), checks, capabilities };
}

/** A runtime that is optional for the host is required by its own backend: a warn there is a fail. */
function required(check: HostCheck): HostCheck {
  return check.status === "warn" ? { ...check, status: "fail" } : check;
}

/** The linux backend's own launch-time probe reports these two; doctor adds the hint. */
function fromLinuxProbe(checks: ProbeCheck[], name: string, hint: string): HostCheck {
  const c = checks.find((x) => x.name === name);
  if (!c) return warn(name, "not reported by the linux backend's probe", hint);
  return c.ok ? pass(name, c.detail) : fail(name, c.detail, hint);
}

/** A real gVisor boot on the platform the gvisor backend would use (kvm where /dev/kvm opens, else ptrace). */
async function checkGvisorBoot(): Promise<HostCheck> {
  const c = await checkRunscBoots(await bestRunscPlatform(), 1_500);
  return c.ok ? pass(c.name, c.detail) : fail(c.name, c.detail, "apt-get install runsc; without a usable /dev/kvm it runs on the ptrace platform");
}

/** The daemon runs as root; a doctor run by another user sees root-only probes fail for that reason alone. */
function privilegesCheck(): HostCheck {
  const uid = process.getuid?.();
  if (uid === 0) return pass("privileges", "running as root");
  return warn("privileges", `running as uid ${uid ?? "?"}: probes that need root (mounts, namespaces, nftables) fail for that reason alone`, "run doctor as root (sudo cleanroom doctor), as the daemon runs");
}
