import { join } from "node:path";

export const sandboxIdPattern = /^[a-z0-9]{12}$/;

/** Where one sandbox's host files live: `<stateDir>/sandboxes/<id>/`. */
export interface SandboxLayout {
  dir: string;
  upper: string;
  work: string;
  /** the overlay mount point, runc's root.path */
  rootfs: string;
  /** the OCI bundle's config (the bundle dir is `dir`) */
  config: string;
  /** host-only path of the agent's listening socket (never inside the rootfs) */
  agentSocket: string;
  /** gvisor: the dir bind-mounted into the sandbox where the agent binds its own socket (runsc --host-uds=create) */
  agentSocketDir: string;
  /** runc's and the agent's stdout/stderr */
  agentLog: string;
  /** /etc/hosts and /etc/resolv.conf the daemon writes, bind-mounted read-only into the sandbox */
  hostsFile: string;
  resolvConfFile: string;
}

export function sandboxesDir(stateDir: string): string {
  return join(stateDir, "sandboxes");
}

export function sandboxLayout(stateDir: string, sandboxId: string): SandboxLayout {
  const dir = join(sandboxesDir(stateDir), sandboxId);
  return {
    dir,
    upper: join(dir, "upper"),
    work: join(dir, "work"),
    rootfs: join(dir, "rootfs"),
    config: join(dir, "config.json"),
    agentSocket: join(dir, "agent.sock"),
    agentSocketDir: join(dir, "agent"),
    agentLog: join(dir, "agent.log"),
    hostsFile: join(dir, "hosts"),
    resolvConfFile: join(dir, "resolv.conf"),
  };
}
