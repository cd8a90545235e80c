import { randomBytes } from "node:crypto";
import { chmod, mkdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Backend } from "../backends/index.ts";
import { diskUsage } from "../cache/index.ts";
import { CleanroomError } from "../errors/index.ts";
import type { Logger } from "../observability/index.ts";
import { newSnapshotId, SNAPSHOT_ID_PATTERN } from "./ids.ts";
import type { SandboxRecord, SnapshotRecord } from "./records.ts";
import type { StateStore } from "./store.ts";

const MAX_NAME_LENGTH = 128;

/**
 * Snapshots on this host: `<dir>/<id>/layer` is a copy of the sandbox's overlay upper dir, taken frozen; the record
 * (in the state database) names what it was stacked on. A new sandbox from a snapshot mounts the same stack.
 */
export class Snapshots {
  readonly #store: StateStore;
  readonly #dir: string;
  readonly #log: Logger;

  constructor(store: StateStore, dir: string, logger: Logger) {
    this.#store = store;
    this.#dir = dir;
    this.#log = logger;
  }

  /** Removes copies a crash left half-made. */
  async open(): Promise<void> {
    // 0711: the shifted root of a sandbox made from a snapshot walks through to its layer
    await mkdir(this.#dir, { recursive: true, mode: 0o711 });
    await chmod(this.#dir, 0o711);
    await rm(join(this.#dir, ".tmp"), { recursive: true, force: true });
  }

  async create(sandbox: SandboxRecord, backend: Backend, name: string): Promise<SnapshotRecord> {
    if (name.length > MAX_NAME_LENGTH || /[\0-\x1f\x7f]/.test(name)) throw new CleanroomError("invalid_argument", `a snapshot name is at most ${MAX_NAME_LENGTH} printable characters`);
    const id = newSnapshotId();
    const tmp = join(this.#dir, ".tmp", `${id}.${randomBytes(3).toString("hex")}`);
    const layer = join(tmp, "layer");
    await mkdir(layer, { recursive: true, mode: 0o711 });
    try {
      await backend.copyWrites(sandbox.id, layer);
      const record: SnapshotRecord = {
        id,
        ...(sandbox.owner ? { owner: sandbox.owner } : {}),
        name: name || `${sandbox.id}-${new Date().toISOString().replace(/[-:]/g, "").slice(0, 15)}`,
        sandboxId: sandbox.id,
        createdAt: new Date().toISOString(),
        backend: sandbox.backend,
        imageRef: sandbox.imageRef,
        imageDigest: sandbox.imageDigest,
        ...(sandbox.imageDefaults ? { imageDefaults: sandbox.imageDefaults } : {}),
        policyHash: sandbox.policyHash,
        ...(sandbox.policy ? { policy: sandbox.policy } : {}),
        ...(sandbox.repository ? { repository: sandbox.repository } : {}),
        cacheEntries: sandbox.cacheEntries ?? [],
        diskBytes: await diskUsage(tmp),
      };
      await chmod(tmp, 0o711);
      await rename(tmp, join(this.#dir, id));
      this.#store.putSnapshot(record);
      this.#log.info({ sandbox_id: sandbox.id, snapshot_id: id, disk_bytes: record.diskBytes }, "snapshot created");
      return record;
    } catch (err) {
      await rm(tmp, { recursive: true, force: true });
      throw err;
    }
  }

  get(id: string): SnapshotRecord {
    const record = SNAPSHOT_ID_PATTERN.test(id) ? this.#store.getSnapshot(id) : undefined;
    if (!record) throw new CleanroomError("not_found", `no snapshot with id "${id}"; list them with \`cleanroom snapshot ls\``);
    return record;
  }

  list(): SnapshotRecord[] {
    return this.#store.listSnapshots();
  }

  layerDir(id: string): string {
    return join(this.#dir, id, "layer");
  }

  /** Deletes a snapshot; the caller makes sure no live sandbox stacks its layer. */
  async remove(id: string): Promise<SnapshotRecord> {
    const record = this.get(id);
    this.#store.deleteSnapshot(id);
    const trash = join(this.#dir, ".tmp", `rm-${id}`);
    await mkdir(join(this.#dir, ".tmp"), { recursive: true, mode: 0o700 });
    await rename(join(this.#dir, id), trash).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== "ENOENT") throw err;
    });
    await rm(trash, { recursive: true, force: true });
    return record;
  }
}
