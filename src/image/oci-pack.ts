import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";
import { CommandError } from "../host-command/index.ts";

export interface PackedLayer {
  /** sha256 of the gzip blob */
  digest: string;
  /** sha256 of the uncompressed tar */
  diffId: string;
  sizeBytes: number;
  uncompressedBytes: number;
}

const PACK_TIMEOUT_MS = 30 * 60_000;

function hashing(hash: ReturnType<typeof createHash>, count: { n: number }): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      count.n += chunk.length;
      cb(null, chunk);
    },
  });
}

/**
 * Packs a root filesystem into one gzip OCI layer with GNU tar: numeric owners, entries sorted by
 * name, no atime/ctime, so rebuilding the same tree gives the same diff id.
 */
export async function packRootfsLayer(rootfs: string, outFile: string): Promise<PackedLayer> {
  const tar = spawn(
    "tar",
    ["--numeric-owner", "--sort=name", "--format=pax", "--pax-option=delete=atime,delete=ctime", "--one-file-system", "-C", rootfs, "-cf", "-", "."],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let stderr = "";
  tar.stderr.on("data", (c: Buffer) => { if (stderr.length < 65536) stderr += c.toString("utf8"); });
  const exited = new Promise<number | null>((resolve) => tar.on("close", (code) => resolve(code)));
  const timer = setTimeout(() => tar.kill("SIGKILL"), PACK_TIMEOUT_MS);
  const diff = createHash("sha256");
  const blob = createHash("sha256");
  const raw = { n: 0 };
  const gz = { n: 0 };
  try {
    await pipeline(tar.stdout, hashing(diff, raw), createGzip({ level: 6 }), hashing(blob, gz), createWriteStream(outFile, { mode: 0o600 }));
  } finally {
    clearTimeout(timer);
  }
  const code = await exited;
  if (code !== 0) throw new CommandError(`tar of ${rootfs} exited with ${code}: ${stderr.trim()}`, stderr, code);
  return { digest: `sha256:${blob.digest("hex")}`, diffId: `sha256:${diff.digest("hex")}`, sizeBytes: gz.n, uncompressedBytes: raw.n };
}
