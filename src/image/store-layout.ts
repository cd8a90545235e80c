import { createHash, randomBytes } from "node:crypto";
import { mkdir, open, rename, rm, chmod } from "node:fs/promises";
import { join } from "node:path";

/**
 * Where things live under the image store root. Names are short on purpose: layer dirs are stacked
 * into one overlayfs mount option string, which is limited to a page.
 *
 *   blobs/sha256/<hex>   content-addressed blobs (manifests, configs, compressed layers)
 *   refs/<hash>.json     one file per tag/ref, written atomically
 *   layers/<id>/         unpacked layers, renamed into place when complete
 *   pins/<pid>-<r>.json  digests an in-flight pull/import holds, so a concurrent GC keeps them
 *   tmp/                 partial downloads and temp files
 *   cache/               debootstrap tarballs
 */
export class StoreLayout {
  readonly root: string;
  readonly blobs: string;
  readonly refs: string;
  readonly layers: string;
  readonly pins: string;
  readonly tmp: string;
  readonly cache: string;
  constructor(root: string) {
    this.root = root;
    this.blobs = join(root, "blobs", "sha256");
    this.refs = join(root, "refs");
    this.layers = join(root, "layers");
    this.pins = join(root, "pins");
    this.tmp = join(root, "tmp");
    this.cache = join(root, "cache");
  }

  /** Creates the directories; the root and layers/ are 0711 so the sandbox's shifted root can reach layer dirs. */
  async ensure(): Promise<void> {
    await mkdir(this.root, { recursive: true });
    await chmod(this.root, 0o711);
    await mkdir(this.layers, { recursive: true, mode: 0o711 });
    await chmod(this.layers, 0o711);
    for (const d of [this.blobs, this.refs, this.pins, this.tmp, this.cache]) await mkdir(d, { recursive: true, mode: 0o700 });
  }

  blobPath(digest: string): string {
    return join(this.blobs, digest.slice("sha256:".length));
  }

  refPath(ref: string): string {
    return join(this.refs, `${createHash("sha256").update(ref).digest("hex").slice(0, 32)}.json`);
  }

  layerPath(id: string): string {
    return join(this.layers, id);
  }

  /** A unique temp name in tmp/ carrying our pid, so a later run can tell stale files from live ones. */
  tempPath(prefix: string): string {
    return join(this.tmp, `${prefix}.${process.pid}.${randomBytes(4).toString("hex")}`);
  }
}

/** Writes `data` to `path` atomically: temp file in the same dir, fsync, rename. */
export async function writeFileAtomic(path: string, data: string | Buffer, mode = 0o644): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
  const fh = await open(tmp, "wx", mode);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

/** True when a process with this pid exists (EPERM counts as alive). */
export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}
