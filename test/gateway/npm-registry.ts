// An HTTPS npm registry for gateway tests, answering the way registry.npmjs.org does: full or abbreviated
// packuments by Accept, with ETags and 304s, and tarballs made by the real `npm pack` (real integrity, shasum).
// Also the repo's own npm client (npm 10 on this Node 24), isolated from the machine's npm configuration.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:https";
import type { AddressInfo, Socket } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { TestCertificates } from "../fixtures/tls.ts";

const npmCli = join(import.meta.dirname, "..", "..", "node_modules", "npm", "bin", "npm-cli.js");

export interface TestPackage {
  name: string;
  version: string;
  dependencies?: Record<string, string>;
  /** the package's index.js */
  main?: string;
  /** dist.tarball points here instead of at this registry (a tarball another host serves) */
  tarballUrl?: string;
  /** the registry serves other bytes than the packument's integrity promises */
  corrupt?: boolean;
}

interface PackedVersion extends TestPackage {
  /** the file name in the tarball URL: `<name without scope>-<version>.tgz` */
  file: string;
  tgz: Buffer;
  integrity: string;
  shasum: string;
}

export interface RegistryRequest {
  method: string;
  url: string;
  accept: string | undefined;
  ifNoneMatch: string | undefined;
  authorization: string | undefined;
}

export interface TestNpmRegistry {
  port: number;
  /** "npm.test:<port>": the form gateway paths and policy rules use */
  authority: string;
  requests: RegistryRequest[];
  /** while false, every connection (also a kept-alive one) is closed at once: an unreachable upstream */
  setReachable(reachable: boolean): void;
  tarball(file: string): { integrity: string; shasum: string };
}

export interface NpmResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the repo's npm with this Node, HOME in `home` and no npm_* variables or config from the machine. */
export function runNpm(args: string[], opts: { cwd: string; home: string; timeoutMs?: number }): Promise<NpmResult> {
  mkdirSync(opts.home, { recursive: true });
  const inherited = Object.entries(process.env).filter(([key]) => !/^npm_/i.test(key) && key !== "NODE_TEST_CONTEXT" && key !== "NODE_OPTIONS");
  const env: NodeJS.ProcessEnv = {
    ...Object.fromEntries(inherited),
    HOME: opts.home,
    PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ""}`,
    npm_config_userconfig: join(opts.home, ".npmrc"),
    npm_config_globalconfig: join(opts.home, "global-npmrc"),
    npm_config_update_notifier: "false",
    npm_config_fund: "false",
    npm_config_audit: "false",
  };
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [npmCli, ...args], { cwd: opts.cwd, env, timeout: opts.timeoutMs ?? 120_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err && typeof err.code !== "number") return reject(new Error(`npm ${args.join(" ")}: ${err.message}\n${stderr}`));
      resolve({ code: err ? Number(err.code) : 0, stdout, stderr });
    });
  });
}

/** Packs `packages` with `npm pack` and serves them at https://`host`:<port>/ (the name must resolve to 127.0.0.1). */
export async function startTestNpmRegistry(
  defer: (fn: () => unknown) => void,
  opts: { certs: TestCertificates; host: string; packages: TestPackage[]; /** added before every answer (a distant registry) */ latencyMs?: number },
): Promise<TestNpmRegistry> {
  const work = mkdtempSync(join(tmpdir(), "cleanroom-npm-registry-"));
  defer(() => rmSync(work, { recursive: true, force: true }));
  const packed = await packAll(work, opts.packages);
  const requests: RegistryRequest[] = [];
  const sockets = new Set<Socket>();
  let reachable = true;
  let port = 0;
  const server: Server = createServer({ key: opts.certs.key, cert: opts.certs.cert }, (req, res) => {
    const h = req.headers;
    requests.push({ method: req.method ?? "", url: req.url ?? "", accept: h.accept, ifNoneMatch: h["if-none-match"], authorization: h.authorization });
    const answer = respond(packed, req.method ?? "", req.url ?? "", h.accept ?? "", `https://${opts.host}:${port}`);
    if (opts.latencyMs) {
      setTimeout(() => {
        if (answer.etag && h["if-none-match"] === answer.etag) return res.writeHead(304, { etag: answer.etag }).end();
        res.writeHead(answer.status, { "content-type": answer.type, ...(answer.etag ? { etag: answer.etag } : {}) }).end(answer.body);
      }, opts.latencyMs);
      return;
    }
    if (answer.etag && h["if-none-match"] === answer.etag) return res.writeHead(304, { etag: answer.etag }).end();
    res.writeHead(answer.status, { "content-type": answer.type, ...(answer.etag ? { etag: answer.etag } : {}) }).end(answer.body);
  });
  server.on("connection", (socket: Socket) => {
    if (!reachable) return socket.destroy();
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as AddressInfo).port;
  defer(() => new Promise((resolve) => {
    server.close(resolve);
    for (const socket of sockets) socket.destroy();
  }));
  return {
    port,
    authority: `${opts.host}:${port}`,
    requests,
    setReachable(next) {
      reachable = next;
      if (!next) for (const socket of sockets) socket.destroy();
    },
    tarball(file) {
      const found = [...packed.values()].flat().find((v) => v.file === file);
      if (!found) throw new Error(`no tarball ${file}`);
      return { integrity: found.integrity, shasum: found.shasum };
    },
  };
}

/** Writes each package to a directory and packs them all with one `npm pack`; returns versions by name. */
async function packAll(work: string, packages: TestPackage[]): Promise<Map<string, PackedVersion[]>> {
  const dirs = packages.map((pkg, i) => {
    const dir = join(work, "src", String(i));
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "package.json"), JSON.stringify({ name: pkg.name, version: pkg.version, main: "index.js", dependencies: pkg.dependencies ?? {} }));
    writeFileSync(join(dir, "index.js"), pkg.main ?? `module.exports = ${JSON.stringify(`${pkg.name}@${pkg.version}`)};\n`);
    return dir;
  });
  const out = join(work, "tarballs");
  mkdirSync(out);
  const result = await runNpm(["pack", "--json", "--pack-destination", out, ...dirs], { cwd: work, home: join(work, "home") });
  if (result.code !== 0) throw new Error(`npm pack failed: ${result.stderr}`);
  const listed = JSON.parse(result.stdout) as { filename: string }[];
  const byName = new Map<string, PackedVersion[]>();
  packages.forEach((pkg, i) => {
    const tgz = readFileSync(join(out, listed[i]!.filename));
    const version: PackedVersion = {
      ...pkg,
      file: `${pkg.name.replace(/^@[^/]+\//, "")}-${pkg.version}.tgz`,
      tgz,
      integrity: `sha512-${createHash("sha512").update(tgz).digest("base64")}`,
      shasum: createHash("sha1").update(tgz).digest("hex"),
    };
    byName.set(pkg.name, [...(byName.get(pkg.name) ?? []), version]);
  });
  return byName;
}

interface Answer {
  status: number;
  type: string;
  body: string | Buffer;
  etag?: string;
}

function respond(packed: Map<string, PackedVersion[]>, method: string, url: string, accept: string, origin: string): Answer {
  const notFound: Answer = { status: 404, type: "application/json", body: '{"error":"Not found"}' };
  if (method !== "GET") return { status: 405, type: "application/json", body: '{"error":"method not allowed"}' };
  const path = decodeURIComponent(url.split("?")[0]!);
  const tarball = /^\/(.+)\/-\/([^/]+)$/.exec(path);
  if (tarball) {
    const version = packed.get(tarball[1]!)?.find((v) => v.file === tarball[2] && !v.tarballUrl);
    if (!version) return notFound;
    const body = version.corrupt ? Buffer.concat([version.tgz.subarray(0, -1), Buffer.from([version.tgz.at(-1)! ^ 0xff])]) : version.tgz;
    return { status: 200, type: "application/octet-stream", body };
  }
  const versions = packed.get(path.slice(1));
  if (!versions) return notFound;
  const abbreviated = accept.includes("application/vnd.npm.install-v1+json");
  const body = JSON.stringify(packument(versions, origin, abbreviated));
  return {
    status: 200,
    type: abbreviated ? "application/vnd.npm.install-v1+json" : "application/json",
    body,
    etag: `"${createHash("sha1").update(body).digest("hex")}"`,
  };
}

/** A packument as registry.npmjs.org shapes it; the abbreviated form keeps only what installs need. */
function packument(versions: PackedVersion[], origin: string, abbreviated: boolean): Record<string, unknown> {
  const name = versions[0]!.name;
  const modified = "2026-01-01T00:00:00.000Z";
  const entries = versions.map((v) => {
    const dist = { tarball: v.tarballUrl ?? `${origin}/${name}/-/${v.file}`, integrity: v.integrity, shasum: v.shasum };
    const manifest = { name, version: v.version, dependencies: v.dependencies ?? {}, dist };
    return [v.version, abbreviated ? manifest : { ...manifest, _id: `${name}@${v.version}`, main: "index.js", description: `test package ${name}` }] as const;
  });
  const distTags = { latest: versions.at(-1)!.version };
  if (abbreviated) return { name, modified, "dist-tags": distTags, versions: Object.fromEntries(entries) };
  const time = { created: modified, modified, ...Object.fromEntries(versions.map((v) => [v.version, modified])) };
  return { _id: name, name, "dist-tags": distTags, versions: Object.fromEntries(entries), time };
}
