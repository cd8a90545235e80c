import { constants } from "node:fs";
import { open } from "node:fs/promises";
import { tryCommand } from "../../host-command/index.ts";
import { pass, warn, type HostCheck } from "./check.ts";
import { qemuBinary } from "./runtimes.ts";

const TCG = "QEMU will use TCG (software emulation, several times slower)";

/**
 * Whether the qemu backend gets KVM. /dev/kvm can exist and still refuse ordinary guests (a PVM-only host), so
 * opening it proves little: qemu is asked to bring up its KVM accelerator for real (KVM_GET_API_VERSION,
 * KVM_CREATE_VM, capability checks) on an empty machine, then quits through its monitor. Never a fail: without
 * KVM the qemu backend still runs, on TCG.
 */
export async function checkKvm(opts: { device?: string; qemu?: string } = {}): Promise<HostCheck> {
  const device = opts.device ?? "/dev/kvm";
  const qemu = opts.qemu ?? qemuBinary;
  try {
    const f = await open(device, constants.O_RDWR);
    await f.close();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    if (code === "ENOENT") return warn("kvm", `no ${device}: ${TCG}`, "enable VT-x/AMD-V (nested virtualization on a VM) and modprobe kvm_intel or kvm_amd");
    return warn("kvm", `${device} does not open (${code}): ${TCG}`, `give the daemon's user read-write access to ${device} (group kvm)`);
  }
  const r = await tryCommand(qemu, ["-machine", "none", "-accel", "kvm", "-nodefaults", "-display", "none", "-monitor", "stdio"], {
    timeoutMs: 1_500,
    input: "quit\n",
    maxOutputBytes: 64 * 1024,
  });
  if (r.error?.startsWith("ENOENT")) return warn("kvm", `${device} opens, but without ${qemu} no VM could be created to prove it works`, `install ${qemu} to use --backend qemu`);
  if (r.code === 0) return pass("kvm", `${qemu} created a KVM VM on ${device}`);
  const why = r.stderr.trim().split("\n").slice(-2).join("; ") || r.error || `exit ${r.code}`;
  return warn("kvm", `${device} opens, but ${qemu} could not create a KVM VM (${why}): ${TCG}`, "this host's KVM does not run ordinary guests (e.g. PVM-only or nested KVM off); enable hardware virtualization for full speed");
}

