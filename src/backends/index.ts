/**
 * Isolation backends: turn image layer dirs into a running sandbox whose PID 1 is cleanroom-agent, and
 * hand the daemon a unix socket the agent accepts on. Today only `linux` runs (runc, user namespace,
 * overlayfs, cgroups, seccomp); `probeHost` also reports gvisor and qemu, as not usable yet.
 *
 * Host layout of a linux sandbox: `<stateDir>/sandboxes/<id>/{upper,work,rootfs,config.json,agent.sock,agent.log}`,
 * runc state in `<runDir>/runc/<id>`, cgroup `/cleanroom/<id>` in every hierarchy.
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
export { probeHost } from "./host-probe.ts";
