import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer as createHttpServer, request as httpRequest, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { GATEWAY_HOSTNAME } from "../../src/gateway/index.ts";
import { parseAuthChallenge } from "../../src/gateway/oci-upstream.ts";
import { suiteCleanup } from "../fixtures/cleanup.ts";
import { startTestGateway, type TestGateway } from "../fixtures/gateway.ts";
import { startRegistry, type TestRegistry } from "../fixtures/registry.ts";
import { testCertificates } from "../fixtures/tls.ts";
import { loadLayoutBlobs } from "../image/helpers/fake-registry.ts";
import { skopeoPush } from "../image/helpers/env.ts";
import { tarOf, writeOciLayout, type BuiltImage } from "../image/helpers/oci-layout.ts";

const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const suite = suiteCleanup();
const sha256 = (bytes: Buffer | string) => `sha256:${createHash("sha256").update(bytes).digest("hex")}`;

// one image, pushed with skopeo to Debian's docker-registry as tools/app:1 and library/hello:1
const layout = await mkdtemp(join(tmpdir(), "cleanroom-oci-layout-"));
suite.after(() => rm(layout, { recursive: true, force: true }));
const image: BuiltImage = await writeOciLayout(layout, "1", { layers: [tarOf([{ path: "hello.txt", data: "hello through the gateway\n" }])] });
const blobs = await loadLayoutBlobs(layout);
const blobDigests = [image.configDigest, ...image.layers.map((l) => l.digest)];
const layerDigest = image.layers[0]!.digest;
const registry = await startRegistry(suite);
await skopeoPush(layout, "1", `${registry.host}/tools/app:1`);

function gatewayFor(upstream: TestRegistry, name = "registry.test", policyHost = name): Promise<TestGateway> {
  return startTestGateway(suite.after, { rules: [{ host: policyHost, ports: [443] }], settings: { ociRegistries: { [name]: upstream.url } } });
}

const reasons = (gw: TestGateway) => gw.audits.map((a) => a.reasonCode);

async function pullImage(gw: TestGateway, base: string, reference: string): Promise<void> {
  const manifest = await gw.get(`${base}/manifests/${reference}`, { headers: { accept: OCI_MANIFEST } });
  assert.equal(manifest.status, 200, manifest.body.toString());
  assert.deepEqual(manifest.body, image.manifest);
  assert.equal(manifest.headers["docker-content-digest"], image.manifestDigest);
  assert.equal(manifest.headers["content-type"], OCI_MANIFEST);
  assert.equal(manifest.headers["docker-distribution-api-version"], "registry/2.0");
  for (const digest of blobDigests) {
    const blob = await gw.get(`${base}/blobs/${digest}`);
    assert.equal(blob.status, 200, blob.body.toString());
    assert.equal(sha256(blob.body), digest);
    assert.deepEqual(blob.body, blobs.get(digest));
    assert.equal(blob.headers["docker-content-digest"], digest);
    assert.equal(blob.headers["content-length"], String(blob.body.length));
  }
}

test("a manifest by tag and by digest, and every blob it names, come through byte-identical", async () => {
  const gw = await gatewayFor(registry);
  await pullImage(gw, "/registry/registry.test/v2/tools/app", "1");
  await pullImage(gw, "/registry/registry.test/v2/tools/app", image.manifestDigest);
  const head = await gw.get(`/registry/registry.test/v2/tools/app/blobs/${layerDigest}`, { method: "HEAD" });
  assert.equal(head.status, 200);
  assert.equal(head.headers["content-length"], String(blobs.get(layerDigest)!.length));
  assert.equal(head.body.length, 0);
  assert.ok(gw.audits.every((a) => a.service === "registry" && a.destinationHost === "registry.test" && a.action === "allow"));
});

test("a second pull is served from the cache, and still is once the registry is gone", async (t) => {
  const own = await startRegistry(t);
  await skopeoPush(layout, "1", `${own.host}/tools/app:1`);
  const gw = await gatewayFor(own);
  await pullImage(gw, "/registry/registry.test/v2/tools/app", "1");
  assert.deepEqual(reasons(gw), ["proxied", "proxied", "proxied"]);
  await pullImage(gw, "/registry/registry.test/v2/tools/app", "1");
  // the tag was revalidated upstream (HEAD) and named a digest already cached: no bytes moved
  assert.deepEqual(reasons(gw).slice(3), ["cached", "cached", "cached"]);
  await own.stop();
  await pullImage(gw, "/registry/registry.test/v2/tools/app", image.manifestDigest);
  await pullImage(gw, "/registry/registry.test/v2/tools/app", "1");
  assert.deepEqual(reasons(gw).slice(6), ["cached", "cached", "cached", "cached", "cached", "cached"]);
  const uncached = await gw.get("/registry/registry.test/v2/tools/app/manifests/2");
  assert.equal(uncached.status, 502);
  assert.equal(JSON.parse(uncached.body.toString()).reason_code, "upstream_error");
});

test("a blob cached for one repository is served to another only after that repository's upstream has it", async (t) => {
  const own = await startRegistry(t);
  await skopeoPush(layout, "1", `${own.host}/tools/app:1`);
  const gw = await gatewayFor(own);
  assert.equal((await gw.get(`/registry/registry.test/v2/tools/app/blobs/${layerDigest}`)).status, 200);
  const other = await gw.get(`/registry/registry.test/v2/tools/other/blobs/${layerDigest}`);
  assert.equal(other.status, 404, other.body.toString());
  assert.match(other.body.toString(), /BLOB_UNKNOWN|NAME_UNKNOWN/);
  await skopeoPush(layout, "1", `${own.host}/tools/other:1`);
  const pushed = await gw.get(`/registry/registry.test/v2/tools/other/blobs/${layerDigest}`);
  assert.equal(pushed.status, 200);
  assert.deepEqual(pushed.body, blobs.get(layerDigest));
  assert.deepEqual(reasons(gw), ["proxied", "proxied", "cached"]);
});

test("tags are listed from the registry", async () => {
  await skopeoPush(layout, "1", `${registry.host}/tools/listed:1`);
  await skopeoPush(layout, "1", `${registry.host}/tools/listed:2`);
  const gw = await gatewayFor(registry);
  const list = await gw.get("/registry/registry.test/v2/tools/listed/tags/list");
  assert.equal(list.status, 200, list.body.toString());
  const body = JSON.parse(list.body.toString()) as { name: string; tags: string[] };
  assert.deepEqual({ ...body, tags: body.tags.sort() }, { name: "tools/listed", tags: ["1", "2"] });
  assert.deepEqual(reasons(gw), ["proxied"]);
});

test("a tag list's next-page link points back at the gateway", async () => {
  // Debian's docker-registry does not paginate: a server of our own sends the Link header
  const paged = createHttpServer((req, res) => {
    const next = req.url === "/v2/team/app/tags/list?n=1" ? { link: '</v2/team/app/tags/list?last=1&n=1>; rel="next"' } : {};
    res.writeHead(200, { "content-type": "application/json", ...next }).end(JSON.stringify({ name: "team/app", tags: [next.link ? "1" : "2"] }));
  });
  await new Promise<void>((r) => paged.listen(0, "127.0.0.1", r));
  suite.after(() => new Promise((r) => paged.close(r)));
  const gw = await startTestGateway(suite.after, {
    rules: [{ host: "paged.test", ports: [443] }],
    settings: { ociRegistries: { "paged.test": `http://127.0.0.1:${(paged.address() as AddressInfo).port}` } },
  });
  const first = await gw.get("/registry/paged.test/v2/team/app/tags/list?n=1");
  assert.equal(first.headers.link, '</registry/paged.test/v2/team/app/tags/list?last=1&n=1>; rel="next"');
  const second = await gw.get("/registry/paged.test/v2/team/app/tags/list?last=1&n=1");
  assert.deepEqual(JSON.parse(second.body.toString()).tags, ["2"]);
  assert.equal(second.headers.link, undefined);
});

test("/v2/ is a Docker Hub mirror: single names get library/, and it shares the cache with /registry/docker.io/", async () => {
  await skopeoPush(layout, "1", `${registry.host}/library/hello:1`);
  const gw = await gatewayFor(registry, "docker.io", "registry-1.docker.io");
  const ping = await gw.get("/v2/");
  assert.equal(ping.status, 200);
  assert.deepEqual(JSON.parse(ping.body.toString()), {});
  assert.equal(ping.headers["docker-distribution-api-version"], "registry/2.0");
  await pullImage(gw, "/v2/hello", "1");
  await pullImage(gw, "/registry/docker.io/v2/library/hello", image.manifestDigest);
  assert.deepEqual(reasons(gw), ["proxied", "proxied", "proxied", "proxied", "cached", "cached", "cached"]);
  assert.deepEqual([...new Set(gw.audits.map((a) => `${a.service} ${a.destinationHost}`))], ["dockerhub registry-1.docker.io", "registry registry-1.docker.io"]);
});

test("a registry the stage does not allow is refused, cached content included", async () => {
  const gw = await gatewayFor(registry);
  assert.equal((await gw.get(`/registry/registry.test/v2/tools/app/blobs/${layerDigest}`)).status, 200);
  const elsewhere = await gw.get("/registry/other.test/v2/tools/app/manifests/1");
  assert.equal(elsewhere.status, 403);
  assert.equal(JSON.parse(elsewhere.body.toString()).reason_code, "host_not_allowed");
  assert.equal((await gw.get("/v2/hello/manifests/1")).status, 403);
  gw.setRules([]);
  assert.equal((await gw.get(`/registry/registry.test/v2/tools/app/blobs/${layerDigest}`)).status, 403);
  assert.deepEqual(reasons(gw), ["proxied", "host_not_allowed", "host_not_allowed", "host_not_allowed"]);
  assert.equal(gw.audits[1]?.destinationHost, "other.test:443");
  assert.equal(gw.audits[2]?.destinationHost, "registry-1.docker.io:443");
});

/** A request with any method (the fixture's get() speaks only GET/HEAD/POST). */
function send(gw: TestGateway, method: string, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: "127.0.0.1", port: gw.gateway.port, path, method, headers: { host: `${GATEWAY_HOSTNAME}:${gw.gateway.port}` } }, (res) => {
      res.resume().on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("error", reject).end();
  });
}

test("pushes, deletes, the catalog and malformed names or digests are refused", async () => {
  const gw = await gatewayFor(registry);
  for (const method of ["PUT", "POST", "PATCH", "DELETE"]) {
    assert.equal(await send(gw, method, "/registry/registry.test/v2/tools/app/blobs/uploads/"), 405, method);
    assert.equal(await send(gw, method, `/v2/hello/manifests/1`), 405, method);
  }
  const malformed = [
    "/registry/registry.test/v2/_catalog",
    "/registry/registry.test/v2/tools/app/blobs/uploads/",
    "/registry/registry.test/v2/Tools/app/manifests/1",
    "/registry/registry.test/v2/tools/app/manifests/sha512:" + "a".repeat(128),
    `/registry/registry.test/v2/tools/app/blobs/sha256:${"A".repeat(64)}`,
    "/registry/registry.test/v2/tools/app/tags/list?q=1",
    "/registry/registry.test/tools/app/manifests/1",
  ];
  for (const path of malformed) assert.equal((await gw.get(path)).status, 400, path);
  const counts = reasons(gw).reduce<Record<string, number>>((n, r) => ({ ...n, [r]: (n[r] ?? 0) + 1 }), {});
  assert.deepEqual(counts, { method_not_allowed: 8, invalid_request: malformed.length });
});

test("bytes that do not match their digest are refused and nothing is cached", async () => {
  const state = { honest: false };
  const manifestClaim = sha256("some other manifest");
  const liar = createHttpServer((req, res) => {
    if (req.url === `/v2/evil/blobs/${layerDigest}`) return res.writeHead(200).end(state.honest ? blobs.get(layerDigest) : Buffer.from("not the layer"));
    if (req.url === "/v2/evil/manifests/1") return res.writeHead(200, { "content-type": OCI_MANIFEST, "docker-content-digest": manifestClaim }).end(image.manifest);
    if (req.url === `/v2/evil/manifests/${image.manifestDigest}`) return res.writeHead(200, { "content-type": OCI_MANIFEST }).end("{}");
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => liar.listen(0, "127.0.0.1", r));
  suite.after(() => new Promise((r) => liar.close(r)));
  const gw = await startTestGateway(suite.after, {
    rules: [{ host: "tampered.test", ports: [443] }],
    settings: { ociRegistries: { "tampered.test": `http://127.0.0.1:${(liar.address() as AddressInfo).port}` } },
  });
  for (const path of [`/registry/tampered.test/v2/evil/blobs/${layerDigest}`, "/registry/tampered.test/v2/evil/manifests/1", `/registry/tampered.test/v2/evil/manifests/${image.manifestDigest}`]) {
    const refused = await gw.get(path);
    assert.equal(refused.status, 502, path);
    assert.match(JSON.parse(refused.body.toString()).message, /refused/);
  }
  state.honest = true;
  const honest = await gw.get(`/registry/tampered.test/v2/evil/blobs/${layerDigest}`);
  assert.deepEqual(honest.body, blobs.get(layerDigest));
  assert.deepEqual(reasons(gw), ["upstream_error", "upstream_error", "upstream_error", "proxied"]);
  assert.equal(gw.audits[0]?.destinationHost, "tampered.test");
});

// A registry of our own that wants a bearer token from a realm, and sends some blobs to a CDN.
const certs = testCertificates(["private.test", "realm.test", "stray.test", "denied-realm.test", "cdn.test"]);
suite.after(() => certs.remove());
const issued = new Set<string>();
const tokenRequests: { query: URLSearchParams; authorization: string | undefined }[] = [];
const registryRequests: { path: string; authorization: string | undefined; host: string }[] = [];
const cdnBlob = Buffer.from("layer bytes kept on a CDN\n");
const authServer = createHttpsServer({ key: certs.key, cert: certs.cert }, (req, res) => serveAuthRegistry(req, res));
await new Promise<void>((r) => authServer.listen(0, "127.0.0.1", r));
suite.after(() => new Promise((r) => authServer.close(r)));
const authPort = (authServer.address() as AddressInfo).port;

function serveAuthRegistry(req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? "/", "https://x");
  const host = (req.headers.host ?? "").replace(/:\d+$/, "");
  registryRequests.push({ path: url.pathname, authorization: req.headers.authorization, host });
  if (host === "cdn.test") return void res.writeHead(200).end(cdnBlob);
  if (url.pathname === "/token") {
    tokenRequests.push({ query: url.searchParams, authorization: req.headers.authorization });
    const token = `token-${issued.size + 1}`;
    issued.add(token);
    return void res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ token, expires_in: 300 }));
  }
  const bearer = req.headers.authorization?.replace(/^Bearer /, "");
  if (!bearer || !issued.has(bearer)) {
    const realmHost = host === "stray.test" ? "denied-realm.test" : "realm.test";
    res.writeHead(401, { "www-authenticate": `Bearer realm="https://${realmHost}:${authPort}/token",service="private",scope="repository:team/app:pull"` });
    return void res.end(JSON.stringify({ errors: [{ code: "UNAUTHORIZED" }] }));
  }
  if (url.pathname === `/v2/team/app/manifests/${image.manifestDigest}`) return void res.writeHead(200, { "content-type": OCI_MANIFEST }).end(image.manifest);
  if (url.pathname === `/v2/team/app/blobs/${sha256(cdnBlob)}`) return void res.writeHead(307, { location: `https://cdn.test:${authPort}/blob` }).end();
  res.writeHead(404).end();
}

function authGateway(rules: string[]): Promise<TestGateway> {
  const hosts = Object.fromEntries(["private.test", "realm.test", "stray.test", "denied-realm.test", "cdn.test"].map((h) => [h, "127.0.0.1"]));
  return startTestGateway(suite.after, {
    rules: rules.map((host) => ({ host, ports: [authPort] })),
    hosts,
    settings: { upstreamCaFile: certs.caFile, credentialEnv: { "realm.test": "REALM_TOKEN" } },
    env: { REALM_TOKEN: "realm-credential" },
  });
}

test("a registry that wants a bearer token gets one from its realm once, with the configured credential", async () => {
  const gw = await authGateway(["private.test", "realm.test"]);
  const before = tokenRequests.length;
  const base = `/registry/private.test:${authPort}/v2/team/app`;
  const manifest = await gw.get(`${base}/manifests/${image.manifestDigest}`);
  assert.equal(manifest.status, 200, manifest.body.toString());
  assert.deepEqual(manifest.body, image.manifest);
  const missing = await gw.get(`${base}/manifests/${sha256("absent")}`);
  assert.equal(missing.status, 404);
  assert.equal(tokenRequests.length - before, 1);
  const tokenRequest = tokenRequests.at(-1)!;
  assert.equal(tokenRequest.authorization, "Bearer realm-credential");
  assert.equal(tokenRequest.query.get("scope"), "repository:team/app:pull");
  assert.equal(tokenRequest.query.get("service"), "private");
  for (const res of [manifest, missing]) assert.ok(!/token-|realm-credential/.test(JSON.stringify(res.headers) + res.body.toString()));
});

test("a token realm the stage does not allow is refused before it is asked", async () => {
  const gw = await authGateway(["stray.test"]);
  const before = tokenRequests.length;
  const res = await gw.get(`/registry/stray.test:${authPort}/v2/team/app/manifests/${image.manifestDigest}`);
  assert.equal(res.status, 403);
  assert.equal(JSON.parse(res.body.toString()).reason_code, "host_not_allowed");
  assert.equal(gw.audits[0]?.destinationHost, `denied-realm.test:${authPort}`);
  assert.equal(tokenRequests.length, before);
});

test("a blob redirected to a CDN is fetched only from an allowed CDN host, without the registry's token", async () => {
  const path = `/registry/private.test:${authPort}/v2/team/app/blobs/${sha256(cdnBlob)}`;
  const withoutCdn = await authGateway(["private.test", "realm.test"]);
  const refused = await withoutCdn.get(path);
  assert.equal(refused.status, 403);
  assert.equal(withoutCdn.audits[0]?.destinationHost, `cdn.test:${authPort}`);
  const withCdn = await authGateway(["private.test", "realm.test", "cdn.test"]);
  const served = await withCdn.get(path);
  assert.deepEqual(served.body, cdnBlob);
  const cdnRequest = registryRequests.findLast((r) => r.host === "cdn.test");
  assert.ok(cdnRequest);
  assert.equal(cdnRequest.authorization, undefined);
});

test("WWW-Authenticate challenges are read as registries write them", () => {
  assert.deepEqual(parseAuthChallenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push"'), {
    scheme: "bearer",
    params: { realm: "https://auth.docker.io/token", service: "registry.docker.io", scope: "repository:library/alpine:pull,push" },
  });
  assert.deepEqual(parseAuthChallenge('Basic realm="Registry Realm"'), { scheme: "basic", params: { realm: "Registry Realm" } });
  assert.deepEqual(parseAuthChallenge("bearer realm=https://r.test/t, scope=x"), { scheme: "bearer", params: { realm: "https://r.test/t", scope: "x" } });
  assert.equal(parseAuthChallenge('Digest realm="x"'), undefined);
});
