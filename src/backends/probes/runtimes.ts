// The OCI runtimes and the VMM each backend runs on, with their versions.
import { tryCommand } from "../../host-command/index.ts";
import { fail, firstLine, pass, warn, type HostCheck } from "./check.ts";

const TIMEOUT_MS = 1_500;

/** The qemu binary the qemu backend would run on this architecture. */
export const qemuBinary = process.arch === "arm64" ? "qemu-system-aarch64" : "qemu-system-x86_64";

interface VersionResult {
  version?: string;
  /** why there is no version: not installed, or it would not run */
  problem?: string;
  missing: boolean;
}

async function versionOf(file: string, args: string[]): Promise<VersionResult> {
  const r = await tryCommand(file, args, { timeoutMs: TIMEOUT_MS, maxOutputBytes: 64 * 1024 });
  if (r.code === 0) return { version: firstLine(r.stdout || r.stderr), missing: false };
  if (r.error?.startsWith("ENOENT")) return { problem: `${file} not found in PATH`, missing: true };
  return { problem: `${file} ${args.join(" ")}: ${firstLine(r.stderr) || r.error || `exit ${r.code}`}`, missing: false };
}

/** runc runs every linux sandbox: required, at least 1.1 (cgroup v1+v2 handling and `runc features`). */
export async function checkRunc(): Promise<HostCheck> {
  const v = await versionOf("runc", ["--version"]);
  if (!v.version) return fail("runc", v.problem ?? "runc not usable", "apt-get install runc (>= 1.1); the linux backend runs every sandbox with it");
  const m = /runc version (\d+)\.(\d+)/.exec(v.version);
  const recent = m !== null && (Number(m[1]) > 1 || (Number(m[1]) === 1 && Number(m[2]) >= 1));
  return recent ? pass("runc", v.version) : fail("runc", `${v.version}: too old`, "install runc >= 1.1");
}

/** crun is optional: this build's linux backend runs on runc, so a missing crun is not a problem. */
export async function checkCrun(): Promise<HostCheck> {
  const v = await versionOf("crun", ["--version"]);
  if (v.version) return pass("crun", `${v.version} (optional; the linux backend runs on runc)`);
  if (v.missing) return pass("crun", "not installed (optional; the linux backend runs on runc)");
  return warn("crun", v.problem ?? "crun not usable", "reinstall crun, or remove it: the linux backend runs on runc");
}

/** runsc (gVisor) is what the gvisor backend needs; without it only that backend is out. */
export async function checkRunsc(): Promise<HostCheck> {
  const v = await versionOf("runsc", ["--version"]);
  if (v.version) return pass("runsc", v.version);
  return warn("runsc", v.problem ?? "runsc not usable", "install gVisor's runsc (https://gvisor.dev/docs/user_guide/install/) to use --backend gvisor");
}

/** The qemu backend's VMM; without it only that backend is out. */
export async function checkQemu(binary: string = qemuBinary): Promise<HostCheck> {
  const v = await versionOf(binary, ["--version"]);
  if (v.version) return pass("qemu", v.version);
  const pkg = process.arch === "arm64" ? "qemu-system-arm" : "qemu-system-x86";
  return warn("qemu", v.problem ?? `${binary} not usable`, `apt-get install ${pkg} to use --backend qemu`);
}
