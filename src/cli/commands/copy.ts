// `cleanroom cp SRC DST`: one side is `<sandbox-id>:/absolute/path`. Files keep their mode and mtime; directories
// travel as tar streams. What comes out of a sandbox is hostile: files are written to a temp name and renamed,
// and archives are unpacked by node-tar, which refuses absolute names, `..`, and writing through symlinks.
import { createReadStream, createWriteStream } from "node:fs";
import { chmod, lstat, mkdir, rename, rm, stat, utimes } from "node:fs/promises";
import { basename, dirname, join, posix } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { CleanroomError } from "../../errors/index.ts";
import { archivePaths, Cleanroom, downloadFile, extractArchive, statPath, uploadFile } from "../../sdk/index.ts";
import { connectClient } from "../client.ts";

export interface CopyFlags { host?: string; maxBytes?: string }

const SANDBOX_PATH = /^([a-z0-9]{12}):(\/.*)$/;

/** Copies between the local machine and a sandbox; exactly one of src and dst names a sandbox path. */
export async function copy(src: string, dst: string, flags: CopyFlags): Promise<number> {
  const from = SANDBOX_PATH.exec(src);
  const to = SANDBOX_PATH.exec(dst);
  if (Boolean(from) === Boolean(to)) throw new CleanroomError("invalid_argument", "exactly one of SRC and DST must be <sandbox-id>:/absolute/path");
  const maxBytes = flags.maxBytes === undefined ? 0 : parseMaxBytes(flags.maxBytes);
  const client = connectClient(flags);
  try {
    if (to) await copyIn(client, src, to[1]!, sandboxPath(to[2]!), maxBytes);
    else await copyOut(client, from![1]!, sandboxPath(from![2]!), dst, maxBytes);
    return 0;
  } finally {
    client.close();
  }
}

async function copyIn(client: Cleanroom, local: string, id: string, target: string, maxBytes: number): Promise<void> {
  const info = await stat(local).catch(() => undefined);
  if (!info) throw new CleanroomError("not_found", `${local}: no such file or directory`);
  const existing = await statPath(client, id, target, true).catch(() => undefined);
  const into = existing?.type === "dir";
  if (info.isFile()) {
    if (maxBytes && info.size > maxBytes) throw new CleanroomError("resource_exhausted", `${local} is ${info.size} bytes, more than --max-bytes ${maxBytes}`);
    const path = into ? posix.join(target, basename(local)) : target;
    // reads of the upload's message size: a sixteenth of the reads (and thread-pool round trips) of the 64 KiB default
    const content = createReadStream(local, { highWaterMark: 1024 * 1024 });
    await uploadFile(client, id, path, content, { size: info.size, mode: info.mode & 0o7777, mtime: info.mtime.toISOString() });
    return;
  }
  if (!info.isDirectory()) throw new CleanroomError("invalid_argument", `${local} is neither a file nor a directory`);
  const { create } = await import("tar");
  // into an existing directory the copy keeps its name; otherwise it becomes the target
  const tar = into
    ? create({ cwd: dirname(local), portable: true }, [basename(local)])
    : create({ cwd: local, portable: true }, ["."]);
  await extractArchive(client, id, target, tar as unknown as AsyncIterable<Uint8Array>, maxBytes);
}

async function copyOut(client: Cleanroom, id: string, source: string, local: string, maxBytes: number): Promise<void> {
  const entry = await statPath(client, id, source, true);
  const localInfo = await stat(local).catch(() => undefined);
  const into = localInfo?.isDirectory() ?? false;
  if (entry.type === "file") {
    const path = into ? join(local, posix.basename(source)) : local;
    await downloadTo(client, id, source, path, maxBytes);
    return;
  }
  if (entry.type !== "dir") throw new CleanroomError("invalid_argument", `${source} in the sandbox is neither a file nor a directory`);
  const target = into ? join(local, posix.basename(source)) : local;
  await mkdir(target, { recursive: true });
  const { extract } = await import("tar");
  // not strict: an entry node-tar will not write as given (an absolute symlink target, a `..` name) is changed or
  // skipped with a warning instead of ending the copy
  const sink = extract({ cwd: target, preservePaths: false, onwarn: (code, message, data) => process.stderr.write(`cleanroom: warning: ${entryPath(data)}${message} (${code})\n`), filter: (_path, e) => ["File", "OldFile", "ContiguousFile", "Directory", "SymbolicLink", "Link"].includes((e as { type?: string }).type ?? "") });
  await pipeline(Readable.from(archivePaths(client, id, source, ["."], maxBytes)), sink);
}

/** Streams a sandbox file to a temp file beside `path`, then sets mode and mtime and renames it into place. */
async function downloadTo(client: Cleanroom, id: string, source: string, path: string, maxBytes: number): Promise<void> {
  if ((await lstat(path).catch(() => undefined))?.isSymbolicLink()) await rm(path);
  const { entry, content } = await downloadFile(client, id, source, maxBytes);
  const temp = join(dirname(path), `.${basename(path)}.cleanroom-${process.pid}`);
  try {
    await pipeline(Readable.from(content), createWriteStream(temp, { flags: "wx", mode: 0o600 }));
    await chmod(temp, entry.mode & 0o7777);
    const mtime = new Date(entry.mtime);
    if (!Number.isNaN(mtime.getTime())) await utimes(temp, new Date(), mtime);
    await rename(temp, path);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
}

/** "name: " of the tar entry a node-tar warning is about, when it says. */
function entryPath(data: unknown): string {
  const path = (data as { entry?: { path?: unknown }; path?: unknown } | undefined)?.entry?.path ?? (data as { path?: unknown } | undefined)?.path;
  return typeof path === "string" ? `${path.replace(/[^\x20-\x7e]/g, "?")}: ` : "";
}

/** Normalised, without a trailing slash (the helper takes clean absolute paths). */
function sandboxPath(path: string): string {
  return posix.normalize(path).replace(/(.)\/+$/, "$1");
}

function parseMaxBytes(text: string): number {
  const match = /^(\d+)\s*(|B|KiB|MiB|GiB|TiB|K|M|G|T)$/.exec(text.trim());
  const scale: Record<string, number> = { "": 1, B: 1, K: 1024, KiB: 1024, M: 1024 ** 2, MiB: 1024 ** 2, G: 1024 ** 3, GiB: 1024 ** 3, T: 1024 ** 4, TiB: 1024 ** 4 };
  if (!match || Number(match[1]) <= 0) throw new CleanroomError("invalid_argument", `--max-bytes ${text}: expected a positive size like 1048576, 512MiB or 2GiB`);
  return Number(match[1]) * scale[match[2]!]!;
}
