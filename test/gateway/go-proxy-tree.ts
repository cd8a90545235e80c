// A static GOPROXY tree for tests, built from real module sources the way the Go module proxy protocol lays it
// out (<module>/@v/list, <version>.info, .mod, .zip with every file under <module>@<version>/, and @latest), and
// an HTTPS server for it on loopback that counts what it was asked.
import { createWriteStream } from "node:fs";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { dirname, join, relative, resolve, sep } from "node:path";
import { pipeline } from "node:stream/promises";
import yazl from "yazl";
import type { TestCertificates } from "../fixtures/tls.ts";

/** One version of a module: its source files, go.mod among them. */
export interface GoModuleSource {
  module: string;
  version: string;
  files: Record<string, string>;
  /** commit time the .info reports (default 2024-01-02T03:04:05Z) */
  time?: string;
}

export interface GoProxyTree {
  /** directory served as the proxy's root */
  root: string;
  /** where `<module>@<version>` files of kind `ext` live in the tree, relative to root (case-encoded) */
  path(module: string, version: string, ext: "info" | "mod" | "zip"): string;
  /** writes (or rewrites) a module version's sources and its proxy files, and updates list and @latest */
  publish(source: GoModuleSource): Promise<void>;
}

export interface GoProxyServer {
  port: number;
  /** decoded request paths in arrival order */
  requests: string[];
  /** the Authorization header of each request */
  authorizations: (string | undefined)[];
  /** answer these paths (relative to root) with a status instead of the file, e.g. 410 */
  statusOverrides: Map<string, number>;
  close(): Promise<void>;
}

const DEFAULT_TIME = "2024-01-02T03:04:05Z";

/** Go's case encoding for module paths and versions in proxy URLs: "X" → "!x". */
export function escapeCase(path: string): string {
  return path.replace(/[A-Z]/g, (letter) => `!${letter.toLowerCase()}`);
}

/** An empty tree in `dir` (the proxy files in `dir`/proxy, module sources in `dir`/src); `publish` fills it. */
export function goProxyTree(dir: string): GoProxyTree {
  const root = join(dir, "proxy");
  const versionsOf = new Map<string, string[]>();
  const path = (module: string, version: string, ext: string) => `${escapeCase(module)}/@v/${escapeCase(version)}.${ext}`;
  return {
    root,
    path,
    async publish(source) {
      // the sources as a developer has them, then the proxy's view of them
      const sourceDir = join(dir, "src", `${source.module}@${source.version}`);
      for (const [name, text] of Object.entries(source.files)) {
        await mkdir(dirname(join(sourceDir, name)), { recursive: true });
        await writeFile(join(sourceDir, name), text);
      }
      const goMod = source.files["go.mod"];
      if (goMod === undefined) throw new Error(`${source.module}@${source.version} has no go.mod`);
      const info = `${JSON.stringify({ Version: source.version, Time: source.time ?? DEFAULT_TIME })}\n`;
      await writeTreeFile(root, path(source.module, source.version, "info"), info);
      await writeTreeFile(root, path(source.module, source.version, "mod"), goMod);
      await writeModuleZip(sourceDir, `${source.module}@${source.version}/`, join(root, path(source.module, source.version, "zip")));
      const versions = [...new Set([...(versionsOf.get(source.module) ?? []), source.version])];
      versionsOf.set(source.module, versions);
      await writeTreeFile(root, `${escapeCase(source.module)}/@v/list`, versions.map((v) => `${v}\n`).join(""));
      await writeTreeFile(root, `${escapeCase(source.module)}/@latest`, info);
    },
  };
}

/** Writes a zip of `sourceDir` with every file under `prefix`, as Go's module zip format has it. */
export async function writeModuleZip(sourceDir: string, prefix: string, target: string): Promise<void> {
  const zip = new yazl.ZipFile();
  for (const file of await listFiles(sourceDir)) {
    const name = relative(sourceDir, file).split(sep).join("/");
    zip.addBuffer(await readFile(file), `${prefix}${name}`, { mtime: new Date(DEFAULT_TIME), mode: 0o644 });
  }
  zip.end();
  await mkdir(dirname(target), { recursive: true });
  await pipeline(zip.outputStream, createWriteStream(target));
}

async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name)).sort();
}

export async function writeTreeFile(root: string, path: string, content: string | Buffer): Promise<void> {
  await mkdir(dirname(join(root, path)), { recursive: true });
  await writeFile(join(root, path), content);
}

/** Serves `root` over HTTPS on 127.0.0.1 (GET/HEAD of existing files; 404 otherwise). */
export async function serveGoProxyTree(root: string, certs: Pick<TestCertificates, "key" | "cert">): Promise<GoProxyServer> {
  const requests: string[] = [];
  const authorizations: (string | undefined)[] = [];
  const statusOverrides = new Map<string, number>();
  const server: Server = createServer({ key: certs.key, cert: certs.cert }, (req, res) => {
    void (async () => {
      const path = decodeURIComponent(new URL(req.url ?? "/", "https://tree.test").pathname).slice(1);
      requests.push(path);
      authorizations.push(req.headers.authorization);
      const override = statusOverrides.get(path);
      if (override !== undefined) return res.writeHead(override).end(`status ${override} for ${path}\n`);
      const file = resolve(root, path);
      if (req.method !== "GET" && req.method !== "HEAD") return res.writeHead(405).end();
      if (!file.startsWith(`${resolve(root)}${sep}`)) return res.writeHead(400).end();
      const body = await readFile(file).catch(() => undefined);
      if (!body) return res.writeHead(404).end(`not found: ${path}\n`);
      res.writeHead(200, { "content-type": contentType(path), "content-length": body.length }).end(req.method === "HEAD" ? undefined : body);
    })().catch(() => res.destroy());
  });
  await new Promise<void>((ready) => server.listen(0, "127.0.0.1", ready));
  return {
    port: (server.address() as AddressInfo).port,
    requests,
    authorizations,
    statusOverrides,
    close: () =>
      new Promise((done) => {
        server.close(() => done());
        server.closeAllConnections();
      }),
  };
}

function contentType(path: string): string {
  if (path.endsWith(".info") || path.endsWith("@latest")) return "application/json";
  if (path.endsWith(".zip")) return "application/zip";
  return "text/plain; charset=utf-8";
}
