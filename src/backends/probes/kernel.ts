// Kernel features a linux sandbox is made of, each tried for real where that is cheap and leaves nothing behind.
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { tryCommand } from "../../host-command/index.ts";
import { availableControllers, readCgroupLayout } from "../linux/cgroups.ts";
import { isMountPoint, unmount } from "../linux/overlay.ts";
import { fail, firstLine, pass, warn, type HostCheck } from "./check.ts";

const TIMEOUT_MS = 1_500;
const NEEDED_CONTROLLERS = ["memory", "pids", "cpu"];

/** Which cgroup layout the host has (v1, v2 or hybrid) and whether the controllers for sandbox limits are there. */
export async function checkCgroups(): Promise<HostCheck> {
  const layout = await readCgroupLayout();
  if (layout.mode === "none") return fail("cgroups", "no cgroup hierarchy is mounted", "mount cgroup2 on /sys/fs/cgroup (mount -t cgroup2 none /sys/fs/cgroup)");
  const present = await availableControllers(layout);
  const missing = NEEDED_CONTROLLERS.filter((c) => !present.includes(c));
  const mode = layout.mode === "hybrid" ? "hybrid (v1 controllers + a v2 mount; runc handles it, crun would refuse)" : layout.mode;
  const detail = `${mode}, ${layout.hierarchies.length} hierarchies`;
  if (missing.length) {
    return fail("cgroups", `${detail}; missing controllers: ${missing.join(", ")}`, `enable the ${missing.join(", ")} cgroup controllers (kernel command line, e.g. cgroup_enable=memory); sandbox limits need them`);
  }
  return pass("cgroups", detail);
}

/**
 * Mounts a throwaway overlay (empty lower, upper, work) on the filesystem sandbox upper dirs live on, then unmounts
 * and removes it, on every path. `/proc/filesystems` listing overlay does not prove the upper filesystem supports it.
 */
export async function checkOverlayfs(stateDir: string): Promise<HostCheck> {
  const parent = existsSync(stateDir) ? stateDir : tmpdir();
  const asRoot = process.getuid?.() === 0;
  const writableHint = asRoot ? `make ${parent} writable by the daemon` : "the daemon runs as root; run doctor as root to verify";
  let dir: string;
  try {
    dir = await mkdtemp(join(parent, ".doctor-overlay-"));
  } catch (err) {
    return fail("overlayfs", `cannot make a probe dir under ${parent}: ${(err as Error).message}`, writableHint);
  }
  const merged = join(dir, "merged");
  let mountAttempted = false;
  try {
    await Promise.all(["lower", "upper", "work", "merged"].map((d) => mkdir(join(dir, d))));
    const options = `lowerdir=${join(dir, "lower")},upperdir=${join(dir, "upper")},workdir=${join(dir, "work")}`;
    mountAttempted = true;
    const r = await tryCommand("mount", ["-t", "overlay", "overlay", "-o", options, merged], { timeoutMs: TIMEOUT_MS });
    if (r.code === 0) return pass("overlayfs", `mounted an overlay with its upper dir under ${parent}`);
    const why = firstLine(r.stderr) || r.error || `exit ${r.code}`;
    if (!asRoot) return fail("overlayfs", `could not mount an overlay as uid ${process.getuid?.()}: ${why}`, writableHint);
    return fail("overlayfs", `could not mount an overlay with its upper dir under ${parent}: ${why}`, "modprobe overlay; the state dir must be on a filesystem overlayfs accepts as upper (ext4, xfs, tmpfs; not overlayfs or NFS)");
  } catch (err) {
    return fail("overlayfs", `could not prepare the probe under ${parent}: ${(err as Error).message}`, writableHint);
  } finally {
    // a timed-out mount may still have happened
    if (mountAttempted && (await isMountPoint(merged).catch(() => false))) await unmount(merged).catch(() => undefined);
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** Creates a network namespace for real: unshare's namespace dies with it, so nothing is left to remove. */
export async function checkNetworkNamespaces(): Promise<HostCheck> {
  const r = await tryCommand("unshare", ["--net", "true"], { timeoutMs: TIMEOUT_MS });
  if (r.code === 0) return pass("network_namespaces", "creatable (unshare --net)");
  if (r.error?.startsWith("ENOENT")) return fail("network_namespaces", "unshare(1) not found: not tried", "apt-get install util-linux");
  const why = firstLine(r.stderr) || r.error || `exit ${r.code}`;
  return fail("network_namespaces", `cannot create a network namespace: ${why}`, "run the daemon as root, on a kernel with CONFIG_NET_NS (in containers: give it CAP_SYS_ADMIN)");
}

/**
 * nft's check mode sends a transaction to the kernel and rolls it back: it proves netlink access without touching
 * the ruleset. Without nftables the daemon still runs, with loopback-only sandboxes and allowlist policies refused.
 */
export async function checkNftables(): Promise<HostCheck> {
  const version = await tryCommand("nft", ["--version"], { timeoutMs: TIMEOUT_MS });
  if (version.error?.startsWith("ENOENT")) {
    return warn("nftables", "nft not found: sandboxes get loopback only and allowlist policies are refused", "apt-get install nftables");
  }
  const r = await tryCommand("nft", ["--check", "add", "table", "inet", "cleanroom_doctor_probe"], { timeoutMs: TIMEOUT_MS });
  const v = firstLine(version.stdout) || "nft";
  if (r.code === 0) return pass("nftables", `${v}; the kernel accepts a table (checked, not applied)`);
  const why = firstLine(r.stderr) || r.error || `exit ${r.code}`;
  return warn("nftables", `${v}, but the kernel refused a test table: ${why}; sandboxes get loopback only and allowlist policies are refused`, "run the daemon as root (CAP_NET_ADMIN) on a kernel with nf_tables (modprobe nf_tables)");
}
