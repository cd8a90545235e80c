import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { tryCommand } from "../../host-command/index.ts";
import type { ProbeCheck } from "../types.ts";
import { runscVersion, type RunscPlatform } from "./runsc.ts";

/** runsc is installed and says its version. */
export async function checkRunscInstalled(binary = "runsc"): Promise<ProbeCheck> {
  const v = await runscVersion(binary);
  return v.version ? { name: "runsc", ok: true, detail: v.version } : { name: "runsc", ok: false, detail: `${v.problem ?? "runsc not usable"} (apt-get install runsc)` };
}

/**
 * A real gVisor boot: `runsc do true` on the chosen platform with networking off and a throwaway state root
 * (≈ 0.3 s with ptrace). Proves the platform works on this kernel, which the version alone does not.
 */
export async function checkRunscBoots(platform: RunscPlatform, timeoutMs: number, binary = "runsc"): Promise<ProbeCheck> {
  const root = await mkdtemp(join(tmpdir(), "cleanroom-runsc-probe-"));
  try {
    const r = await tryCommand(binary, ["--root", root, `--platform=${platform}`, "--network=none", "do", "true"], { timeoutMs, maxOutputBytes: 64 * 1024 });
    if (r.code === 0) return { name: "runsc_boot", ok: true, detail: `runsc booted a sandbox on the ${platform} platform` };
    const why = r.stderr.trim().split("\n").slice(-2).join("; ") || r.error || `exit ${r.code}`;
    return { name: "runsc_boot", ok: false, detail: `runsc could not boot a sandbox on the ${platform} platform: ${why}` };
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}
