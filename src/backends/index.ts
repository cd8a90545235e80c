/**
 * Isolation backends: turn image layer dirs into a running sandbox whose PID 1 is cleanroom-agent, and
 * hand the daemon a unix socket the agent accepts on. `linux` (runc, user namespace, overlayfs, cgroups, seccomp) and
 * `gvisor` (the same bundle run by runsc, when it is installed) run; qemu does not yet. `probeHost` is `cleanroom
 * doctor`: every host prerequisite as pass/warn/fail with a fix hint (probes in probes/), and each backend's usability
 * and capability map.
 *
 * Host layout of a linux sandbox: `<stateDir>/sandboxes/<id>/{upper,work,rootfs,config.json,agent.sock,agent.log}`,
 * runc state in `<runDir>/runc/<id>`, cgroup `/cleanroom/<id>` in every hierarchy. A gvisor sandbox has the same
 * layout plus `agent/agent.sock` (the agent binds it through runsc --host-uds), runsc state in `<runDir>/runsc`.
 */
export type {
  Backend,
  BackendName,
  BackendProbe,
  CapabilityMap,
  LaunchSpec,
  LaunchedSandbox,
  LinuxBackendOptions,
  ProbeCheck,
  SandboxResources,
  WriteScan,
} from "./types.ts";
export { createLinuxBackend, linuxCapabilities } from "./linux/backend.ts";
export { createGvisorBackend, gvisorBackendIfInstalled, gvisorCapabilities } from "./gvisor/backend.ts";
export { probeHost, type HostProbeOptions } from "./host-probe.ts";
export type { BackendReport, CheckStatus, HostCheck, HostReport } from "./probes/check.ts";
export type { DaemonListener } from "./probes/listener.ts";
export type { DefaultImageLookup } from "./probes/storage.ts";
