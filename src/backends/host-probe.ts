import { spawn } from "node:child_process";
import { constants } from "node:fs";
import { open } from "node:fs/promises";
import type { BackendProbe, LinuxBackendOptions, ProbeCheck } from "./types.ts";
import { tryCommand } from "../host-command/index.ts";
import { linuxCapabilities } from "./linux/backend.ts";
import { probeLinux } from "./linux/probe.ts";

const qemuBinary = process.arch === "arm64" ? "qemu-system-aarch64" : "qemu-system-x86_64";

/** `cleanroom doctor`: host checks and which backends can run here. */
export async function probeHost(opts: LinuxBackendOptions): Promise<{ checks: ProbeCheck[]; backends: BackendProbe[] }> {
  const [linux, nft, runsc, qemu] = await Promise.all([
    probeLinux(opts, { ...linuxCapabilities }),
    versionCheck("nft", "nft", ["--version"], "apt-get install nftables"),
    versionCheck("runsc", "runsc", ["--version"], "install gVisor's runsc"),
    versionCheck("qemu", qemuBinary, ["--version"], "apt-get install qemu-system-x86"),
  ]);
  const kvm = await checkKvm(qemu.ok);
  const checks = [...linux.checks, nft, kvm, runsc, qemu];
  const notYet = "backend not implemented in this build";
  const backends: BackendProbe[] = [
    linux,
    { backend: "gvisor", usable: false, checks: [runsc, { name: "gvisor_backend", ok: false, detail: notYet }], capabilities: {} },
    { backend: "qemu", usable: false, checks: [qemu, kvm, { name: "qemu_backend", ok: false, detail: notYet }], capabilities: {} },
  ];
  return { checks, backends };
}

async function versionCheck(name: string, file: string, args: string[], fix: string): Promise<ProbeCheck> {
  const r = await tryCommand(file, args, { timeoutMs: 5_000 });
  if (r.code === 0) return { name, ok: true, detail: (r.stdout || r.stderr).split("\n")[0]?.trim() ?? "" };
  const why = r.error?.startsWith("ENOENT") ? `${file} not found` : (r.stderr.trim() || r.error || `exit ${r.code}`);
  return { name, ok: false, detail: `${why} (${fix})` };
}

/**
 * /dev/kvm can exist and still not run a guest (e.g. a PVM-only host): when qemu is present, ask it to
 * bring up the KVM accelerator for real; otherwise only say whether the device opens.
 */
async function checkKvm(qemuPresent: boolean): Promise<ProbeCheck> {
  try {
    const f = await open("/dev/kvm", constants.O_RDWR);
    await f.close();
  } catch (err) {
    return { name: "kvm", ok: false, detail: `/dev/kvm not usable: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` };
  }
  if (!qemuPresent) return { name: "kvm", ok: false, detail: "/dev/kvm opens, but no qemu to try a real KVM start: not verified" };
  const r = await qemuKvmAttempt();
  return r.ok ? { name: "kvm", ok: true, detail: "qemu started with -accel kvm" } : { name: "kvm", ok: false, detail: `qemu could not use KVM: ${r.detail}` };
}

/** Starts qemu with KVM and no machine, then quits it through its monitor on stdin. */
function qemuKvmAttempt(): Promise<{ ok: boolean; detail: string }> {
  return new Promise((resolve) => {
    const child = spawn(qemuBinary, ["-machine", "none", "-accel", "kvm", "-nodefaults", "-display", "none", "-monitor", "stdio"], {
      stdio: ["pipe", "ignore", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => {
      if (stderr.length < 4096) stderr += d.toString();
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
    child.once("error", (err) => {
      clearTimeout(timer);
      resolve({ ok: false, detail: err.message });
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve({ ok: code === 0, detail: stderr.trim() || `exit ${code}` });
    });
    child.stdin.end("quit\n");
  });
}
