/**
 * Isolation backends: turn image layers into a running sandbox whose PID 1 is cleanroom-agent, and give
 * the daemon a socket to it. Today only `linux` (runc) runs; gvisor and qemu are probed and reported.
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
} from "./types.ts";
export { createLinuxBackend, linuxCapabilities } from "./linux/backend.ts";
export { probeHost } from "./host-probe.ts";
