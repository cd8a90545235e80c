import { hostSysMaskedPaths, type OciSpec } from "../linux/oci-spec.ts";

/** Where the agent binds its socket inside a gvisor sandbox: a bind mount of the host's `<sandbox>/agent/`. */
export const agentSocketDirInSandbox = "/.cleanroom/run";
export const agentSocketName = "agent.sock";

const EPERM = 1;

/**
 * The linux bundle as runsc runs it (pure):
 * - no user namespace: runsc with `--network=host` starts its sandbox inside the spec's user namespace with the
 *   container's capabilities, and then cannot set up its own chroot (EPERM, runsc 20221219). The gofer serves files
 *   as host root; the image layers keep their shifted owners.
 * - no network namespace entry: runsc is started inside network/'s netns instead (hostinet uses the one it runs in).
 * - gVisor's own sysfs, never a bind of the host's /sys (which a joined netns needs under runc).
 * - the agent binds a unix socket in a bind-mounted dir (runsc --host-uds=create) instead of inheriting fd 3,
 *   which runsc cannot pass.
 * - seccomp (applied by the gVisor kernel, --oci-seccomp) keeps only its EPERM rules: runsc 20221219 ignores
 *   errnoRet and answers EPERM, which would turn clone3's ENOSYS (libc then falls back to clone) into failed
 *   threads. gVisor has no clone3 of its own, so libc gets ENOSYS from it anyway.
 */
export function gvisorSpec(spec: OciSpec, agentSocketDir: string): OciSpec {
  const hostSys = new Set(hostSysMaskedPaths);
  return {
    ...spec,
    process: {
      ...spec.process,
      env: [...spec.process.env.filter((e) => !e.startsWith("CLEANROOM_AGENT_LISTEN_FD=")), `CLEANROOM_AGENT_LISTEN_PATH=${agentSocketDirInSandbox}/${agentSocketName}`],
    },
    mounts: [
      ...spec.mounts.map((m) => (m.destination === "/sys" ? { destination: "/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", "ro"] } : m)),
      { destination: agentSocketDirInSandbox, type: "bind", source: agentSocketDir, options: ["bind", "rw", "nosuid", "nodev", "noexec"] },
    ],
    linux: {
      ...spec.linux,
      uidMappings: [],
      gidMappings: [],
      namespaces: spec.linux.namespaces.filter((n) => n.type !== "user" && n.type !== "network"),
      maskedPaths: spec.linux.maskedPaths.filter((p) => !hostSys.has(p)),
      seccomp: { ...spec.linux.seccomp, syscalls: spec.linux.seccomp.syscalls.filter((r) => r.action !== "SCMP_ACT_ERRNO" || (r.errnoRet ?? EPERM) === EPERM) },
    },
  };
}
