// Where sandboxes live on the host: free space, whether the sandbox's root can reach it, and the default image.
import { statfs } from "node:fs/promises";
import { dirname } from "node:path";
import { untraversableAncestors } from "../linux/host-access.ts";
import { sandboxesDir } from "../linux/sandbox-layout.ts";
import { fail, pass, warn, type HostCheck } from "./check.ts";

const GiB = 1024 ** 3;
export const DISK_WARN_BYTES = 5 * GiB;
export const DISK_FAIL_BYTES = 1 * GiB;

/** Free space under the state dir (or the closest existing dir above it): warn under 5 GiB, fail under 1 GiB. */
export async function checkDiskSpace(stateDir: string): Promise<HostCheck> {
  for (let dir = stateDir; ; dir = dirname(dir)) {
    try {
      const s = await statfs(dir);
      return diskSpaceCheck(dir, s.bavail * s.bsize);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT" || dir === dirname(dir)) {
        return warn("disk_space", `cannot read free space under ${dir}: ${(err as Error).message}`, `check that ${stateDir} is readable by the daemon`);
      }
    }
  }
}

/** The verdict for `freeBytes` available to the daemon under `dir` (pure). */
export function diskSpaceCheck(dir: string, freeBytes: number): HostCheck {
  const detail = `${(freeBytes / GiB).toFixed(1)} GiB free under ${dir}`;
  const hint = `free space there (cleanroom system prune), or move the state dir (CLEANROOM_STATE_DIR)`;
  if (freeBytes < DISK_FAIL_BYTES) return fail("disk_space", `${detail}: under 1 GiB, images and sandboxes will not fit`, hint);
  if (freeBytes < DISK_WARN_BYTES) return warn("disk_space", `${detail}: under 5 GiB`, hint);
  return pass("disk_space", detail);
}

/** runc sets up each rootfs as the sandbox's root (an unprivileged host uid): every dir above the state dir needs o+x. */
export async function checkStateDir(stateDir: string, sandboxRootUid: number): Promise<HostCheck> {
  const closed = await untraversableAncestors(sandboxesDir(stateDir));
  // the backend makes stateDir itself traversable; the dirs above it are the host's
  const above = closed.filter((d) => d.length < stateDir.length);
  if (above.length === 0) return pass("state_dir", stateDir);
  return fail("state_dir", `the sandbox's root (host uid ${sandboxRootUid}) cannot reach ${stateDir}`, `chmod o+x ${above.join(" ")}`);
}

/** What the daemon knows about its default image: its ref, and a lookup that does not build or pull it. */
export interface DefaultImageLookup {
  ref: string;
  find(): Promise<{ digest: string } | undefined>;
}

/** Whether the default base image is already built, so the first sandbox does not wait for debootstrap. */
export async function checkBaseImage(image: DefaultImageLookup): Promise<HostCheck> {
  try {
    const found = await image.find();
    if (found) return pass("base_image", `${image.ref} ${found.digest}`);
    return warn("base_image", `${image.ref} is not built yet: the first sandbox without --image builds it (minutes)`, "cleanroom system warmup");
  } catch (err) {
    return warn("base_image", `cannot read the image store: ${(err as Error).message}`, "check the image dir (CLEANROOM_IMAGE_DIR) is readable by the daemon");
  }
}
