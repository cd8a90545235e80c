import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import type { TestContext } from "node:test";

/**
 * A minimal OCI distribution server on 127.0.0.1 serving an OCI layout's blobs, with knobs for
 * what a real registry would not do on purpose: tampered blobs, connections cut mid-body, Bearer auth.
 */
export interface FakeRegistry {
  host: string;
  blobs: Map<string, Buffer>;
  tags: Map<string, string>;
  /** digest → bytes served instead of the real content */
  tamper: Map<string, Buffer>;
  /** digest → bytes after which the first response is cut off */
  cutOnce: Map<string, number>;
  /** when set, every /v2 request needs `Authorization: Bearer <token>`; the realm is /token on this server */
  bearer?: { token: string; username: string; password: string };
  requests: { path: string; range?: string | undefined; authorization?: string | undefined }[];
  /** when set, blob requests are answered with a 307 to this origin (a CDN), same path */
  redirectBlobsTo?: string;
}

export async function loadLayoutBlobs(layoutDir: string): Promise<Map<string, Buffer>> {
  const blobs = new Map<string, Buffer>();
  const dir = join(layoutDir, "blobs", "sha256");
  for (const hex of await readdir(dir)) blobs.set(`sha256:${hex}`, await readFile(join(dir, hex)));
  return blobs;
}

export async function startFakeRegistry(t: Pick<TestContext, "after">, blobs: Map<string, Buffer>): Promise<FakeRegistry> {
  const reg: FakeRegistry = { host: "", blobs, tags: new Map(), tamper: new Map(), cutOnce: new Map(), requests: [] };
  const server = createServer((req, res) => handle(reg, req, res));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  reg.host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  t.after(() => new Promise<void>((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  }));
  return reg;
}

function handle(reg: FakeRegistry, req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? "/", `http://${reg.host}`);
  reg.requests.push({ path: url.pathname, range: req.headers.range, authorization: req.headers.authorization });
  if (url.pathname === "/token") return token(reg, req, res, url);
  if (reg.bearer && req.headers.authorization !== `Bearer ${reg.bearer.token}`) {
    res.writeHead(401, {
      "www-authenticate": `Bearer realm="http://${reg.host}/token",service="fake",scope="repository:x:pull"`,
      "content-type": "application/json",
    });
    return void res.end(JSON.stringify({ errors: [{ code: "UNAUTHORIZED" }] }));
  }
  const m = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(url.pathname);
  if (!m) {
    res.writeHead(url.pathname === "/v2/" ? 200 : 404);
    return void res.end("{}");
  }
  const [, , kind, reference] = m as unknown as [string, string, string, string];
  if (kind === "blobs" && reg.redirectBlobsTo) {
    res.writeHead(307, { location: `${reg.redirectBlobsTo}${url.pathname}` });
    return void res.end();
  }
  const digest = kind === "manifests" && !reference.startsWith("sha256:") ? reg.tags.get(reference) : reference;
  const real = digest ? reg.blobs.get(digest) : undefined;
  if (!digest || !real) {
    res.writeHead(404, { "content-type": "application/json" });
    return void res.end(JSON.stringify({ errors: [{ code: "MANIFEST_UNKNOWN" }] }));
  }
  const body = reg.tamper.get(digest) ?? real;
  const headers: Record<string, string> = {
    "content-type": kind === "manifests" ? JSON.parse(body.toString()).mediaType ?? "application/vnd.oci.image.manifest.v1+json" : "application/octet-stream",
    "docker-content-digest": digest,
  };
  const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? "");
  const start = range ? Number(range[1]) : 0;
  const slice = body.subarray(start);
  if (range) headers["content-range"] = `bytes ${start}-${body.length - 1}/${body.length}`;
  headers["content-length"] = String(slice.length);
  res.writeHead(range ? 206 : 200, headers);
  const cut = reg.cutOnce.get(digest);
  if (cut !== undefined) {
    reg.cutOnce.delete(digest);
    // let the client read what was sent before the connection drops
    res.write(slice.subarray(0, cut), () => setTimeout(() => res.destroy(), 100));
    return;
  }
  res.end(slice);
}

function token(reg: FakeRegistry, req: IncomingMessage, res: ServerResponse, url: URL): void {
  const want = reg.bearer ? `Basic ${Buffer.from(`${reg.bearer.username}:${reg.bearer.password}`).toString("base64")}` : undefined;
  if (!reg.bearer || req.headers.authorization !== want || !url.searchParams.get("scope")) {
    res.writeHead(401);
    return void res.end("{}");
  }
  res.writeHead(200, { "content-type": "application/json" });
  res.end(JSON.stringify({ token: reg.bearer.token, expires_in: 300 }));
}
