import { resolve } from "node:path";
import type { ImageJson, ImageProgressJson } from "../../api/index.ts";
import { age, formatBytes, printJson, printTable } from "../output.ts";
import { connectClient } from "../client.ts";

type ProgressMessage = { progress?: ImageProgressJson; image?: ImageJson };

/** Renders progress on stderr (one updating line on a terminal) and returns the final image. */
export async function followImageProgress(stream: AsyncIterable<ProgressMessage>, quiet: boolean): Promise<ImageJson | undefined> {
  let image: ImageJson | undefined;
  let lastLine = "";
  const tty = process.stderr.isTTY;
  for await (const message of stream) {
    if (message.image) image = message.image;
    const p = message.progress;
    if (!p || quiet) continue;
    const received = Number(p.receivedBytes ?? 0);
    const total = Number(p.totalBytes ?? 0);
    const bytes = total > 0 ? ` ${formatBytes(received)}/${formatBytes(total)}` : "";
    const line = `${p.phase ?? ""}${p.layerDigest ? ` ${p.layerDigest.slice(7, 19)}` : ""}${bytes}${p.message ? ` ${p.message}` : ""}`;
    if (line === lastLine) continue;
    if (tty) process.stderr.write(`\r\x1b[2K${line.slice(0, (process.stderr.columns || 80) - 1)}`);
    else if (p.phase !== "downloading" || received === total) process.stderr.write(`${line}\n`);
    lastLine = line;
  }
  if (tty && lastLine) process.stderr.write("\r\x1b[2K");
  return image;
}

export async function pullImage(ref: string, flags: { host?: string; json?: boolean }): Promise<number> {
  const client = connectClient(flags);
  printImage(await followImageProgress(client.images.pullImage({ ref }), Boolean(flags.json)), flags.json);
  return 0;
}

export async function importImage(ref: string, archive: string, flags: { host?: string; json?: boolean }): Promise<number> {
  const client = connectClient(flags);
  const archivePath = resolve(archive);
  printImage(await followImageProgress(client.images.importImage({ ref, archivePath }), Boolean(flags.json)), flags.json);
  return 0;
}

export async function listImages(flags: { host?: string; json?: boolean }): Promise<number> {
  const client = connectClient(flags);
  const views = ((await client.images.listImages({})).images ?? []).map(imageView);
  if (flags.json) {
    printJson(views);
    return 0;
  }
  printTable(
    ["REF", "DIGEST", "SIZE", "LAYERS", "CREATED"],
    views.map((i) => [i.ref, i.digest.slice(0, 19), formatBytes(i.size_bytes), String(i.layers), age(i.created_at)]),
  );
  return 0;
}

export async function removeImages(refs: string[], flags: { host?: string }): Promise<number> {
  const client = connectClient(flags);
  for (const ref of refs) {
    await client.images.removeImage({ ref });
    process.stdout.write(`removed ${ref}\n`);
  }
  return 0;
}

export function printImage(image: ImageJson | undefined, json: boolean | undefined): void {
  if (!image) return;
  if (json) printJson(imageView(image));
  else process.stdout.write(`${image.ref}@${image.digest}\n`);
}

function imageView(i: ImageJson) {
  return {
    ref: i.ref ?? "",
    digest: i.digest ?? "",
    size_bytes: Number(i.sizeBytes ?? 0),
    layers: i.layerCount ?? 0,
    platform: i.platform ?? "",
    created_at: i.createdAt ?? "",
  };
}
