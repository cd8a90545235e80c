import { resolve } from "node:path";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { Image, ImageProgress } from "../../api/index.ts";
import { Cleanroom } from "../../sdk/index.ts";
import { age, formatBytes, printJson, printTable } from "../output.ts";

type ProgressMessage = { progress?: ImageProgress | undefined; image?: Image | undefined };

/** Renders progress on stderr (one updating line on a terminal) and returns the final image. */
export async function followImageProgress(stream: AsyncIterable<ProgressMessage>, quiet: boolean): Promise<Image | undefined> {
  let image: Image | undefined;
  let lastLine = "";
  const tty = process.stderr.isTTY;
  for await (const message of stream) {
    if (message.image) image = message.image;
    const p = message.progress;
    if (!p || quiet) continue;
    const bytes = p.totalBytes > 0n ? ` ${formatBytes(Number(p.receivedBytes))}/${formatBytes(Number(p.totalBytes))}` : "";
    const line = `${p.phase}${p.layerDigest ? ` ${p.layerDigest.slice(7, 19)}` : ""}${bytes}${p.message ? ` ${p.message}` : ""}`;
    if (line === lastLine) continue;
    if (tty) process.stderr.write(`\r\x1b[2K${line.slice(0, (process.stderr.columns || 80) - 1)}`);
    else if (p.phase !== "downloading" || p.receivedBytes === p.totalBytes) process.stderr.write(`${line}\n`);
    lastLine = line;
  }
  if (tty && lastLine) process.stderr.write("\r\x1b[2K");
  return image;
}

export async function pullImage(ref: string, flags: { host?: string; json?: boolean }): Promise<number> {
  const client = new Cleanroom({ ...(flags.host ? { host: flags.host } : {}) });
  const image = await followImageProgress(client.stream(() => client.images.pullImage({ ref })), Boolean(flags.json));
  printImage(image, flags.json);
  return 0;
}

export async function importImage(ref: string, archive: string, flags: { host?: string; json?: boolean }): Promise<number> {
  const client = new Cleanroom({ ...(flags.host ? { host: flags.host } : {}) });
  const archivePath = resolve(archive);
  const image = await followImageProgress(client.stream(() => client.images.importImage({ ref, archivePath })), Boolean(flags.json));
  printImage(image, flags.json);
  return 0;
}

export async function listImages(flags: { host?: string; json?: boolean }): Promise<number> {
  const client = new Cleanroom({ ...(flags.host ? { host: flags.host } : {}) });
  const res = await client.call(() => client.images.listImages({}));
  if (flags.json) {
    printJson(res.images.map(imageJson));
    return 0;
  }
  printTable(
    ["REF", "DIGEST", "SIZE", "LAYERS", "CREATED"],
    res.images.map((i) => [i.ref, i.digest.slice(0, 19), formatBytes(Number(i.sizeBytes)), String(i.layerCount), age(i.createdAt && timestampDate(i.createdAt))]),
  );
  return 0;
}

export async function removeImages(refs: string[], flags: { host?: string }): Promise<number> {
  const client = new Cleanroom({ ...(flags.host ? { host: flags.host } : {}) });
  for (const ref of refs) {
    await client.call(() => client.images.removeImage({ ref }));
    process.stdout.write(`removed ${ref}\n`);
  }
  return 0;
}

export function printImage(image: Image | undefined, json: boolean | undefined): void {
  if (!image) return;
  if (json) printJson(imageJson(image));
  else process.stdout.write(`${image.ref}@${image.digest}\n`);
}

function imageJson(i: Image) {
  return {
    ref: i.ref,
    digest: i.digest,
    size_bytes: Number(i.sizeBytes),
    layers: i.layerCount,
    platform: i.platform,
    created_at: i.createdAt ? timestampDate(i.createdAt).toISOString() : "",
  };
}
