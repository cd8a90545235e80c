import { join } from "node:path";
import { createOciBackend, linuxCapabilities } from "../linux/backend.ts";
import { probeLinux } from "../linux/probe.ts";
import { sandboxLayout } from "../linux/sandbox-layout.ts";
import type { Backend, CapabilityMap, LinuxBackendOptions } from "../types.ts";
import { checkRunscBoots, checkRunscInstalled } from "./probe.ts";
import { bestRunscPlatform, runscRuntime, runscVersion, type RunscPlatform } from "./runsc.ts";

/**
 * What the gvisor backend enforces. Egress is network/'s nftables around the netns runsc runs in, as for linux.
 * No user namespace (see spec.ts): the gVisor kernel is the boundary, and the gofer serves files as host root.
 */
export const gvisorCapabilities: Readonly<CapabilityMap> = { ...linuxCapabilities, "sandbox.user_namespace": false };

const bootProbeTimeoutMs = 5_000;

/** The `gvisor` backend: the linux backend's bundle (overlay rootfs, cgroups, seccomp) run by runsc. */
export function createGvisorBackend(options: LinuxBackendOptions & { platform: RunscPlatform }): Backend {
  return createOciBackend(options, (opts) => ({
    runtime: runscRuntime(join(opts.runDir, "runsc"), options.platform, (id) => sandboxLayout(opts.stateDir, id).dir),
    capabilities: gvisorCapabilities,
    probe: async () => {
      const [linux, runsc, boot] = await Promise.all([probeLinux(opts, {}), checkRunscInstalled(), checkRunscBoots(options.platform, bootProbeTimeoutMs)]);
      // runc and its user namespaces are not what this backend stands on
      const shared = linux.checks.filter((c) => c.name !== "runc" && c.name !== "seccomp" && c.name !== "user_namespaces");
      const checks = [runsc, boot, ...shared];
      return { backend: "gvisor", usable: checks.every((c) => c.ok), checks, capabilities: { ...gvisorCapabilities } };
    },
  }));
}

/** `{ gvisor }` when runsc is installed (on the best platform this host offers), else nothing: the daemon's backends. */
export async function gvisorBackendIfInstalled(options: LinuxBackendOptions): Promise<{ gvisor?: Backend }> {
  if (!(await runscVersion()).version) return {};
  return { gvisor: createGvisorBackend({ ...options, platform: await bestRunscPlatform() }) };
}
