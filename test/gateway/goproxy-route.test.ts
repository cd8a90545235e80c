import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { suiteCleanup } from "../fixtures/cleanup.ts";
import { startTestGateway, type TestGateway } from "../fixtures/gateway.ts";
import { testCertificates } from "../fixtures/tls.ts";
import { escapeCase, goProxyTree, serveGoProxyTree, writeModuleZip, writeTreeFile, type GoModuleSource } from "./go-proxy-tree.ts";

const suite = suiteCleanup();
const certs = testCertificates(["goproxy.test", "sum.test"]);
suite.after(() => certs.remove());
const work = mkdtempSync(join(tmpdir(), "cleanroom-goproxy-"));
suite.after(() => rmSync(work, { recursive: true, force: true }));

// a module whose path has upper case, so the proxy's case encoding ("!h") is exercised end to end
const hello = (version: string, greeting = "hello"): GoModuleSource => ({
  module: "example.test/Hello",
  version,
  files: { "go.mod": "module example.test/Hello\n\ngo 1.19\n", "hello.go": `package hello\n\n// Greeting is what the module says.\nfunc Greeting() string { return "${greeting}" }\n` },
});
const tree = goProxyTree(join(work, "tree"));
await tree.publish(hello("v1.0.0"));
await tree.publish(hello("v1.1.0", "hi"));
const upstream = await serveGoProxyTree(tree.root, certs);
suite.after(() => upstream.close());
const proxy = `goproxy.test:${upstream.port}`;
const sumdb = `sum.test:${upstream.port}`;
const helloPath = escapeCase("example.test/Hello");

async function gateway(rules = [{ host: "goproxy.test", ports: [upstream.port] }], env: NodeJS.ProcessEnv = {}): Promise<TestGateway> {
  return startTestGateway(suite.after, {
    rules,
    hosts: { "goproxy.test": "127.0.0.1", "sum.test": "127.0.0.1" },
    settings: { upstreamCaFile: certs.caFile, goProxy: proxy, credentialEnv: { "goproxy.test": "GOPROXY_TEST_TOKEN" } },
    env,
  });
}

/** Runs the host's real `go` with an empty module cache of its own, pointed at the gateway. */
function goModDownload(gw: TestGateway, target: string): Promise<{ code: number; stderr: string; modcache: string }> {
  const home = mkdtempSync(join(work, "go-"));
  const env = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: home,
    GOENV: "off",
    GOPROXY: `${gw.base}/goproxy/`,
    GOSUMDB: "off",
    GOFLAGS: "-modcacherw",
    GOMODCACHE: join(home, "modcache"),
    GOCACHE: join(home, "gocache"),
    GOPATH: join(home, "gopath"),
  };
  return new Promise((done) => {
    execFile("go", ["mod", "download", target], { cwd: home, env, timeout: 120_000, maxBuffer: 1 << 20 }, (err, _stdout, stderr) => {
      done({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stderr, modcache: env.GOMODCACHE });
    });
  });
}

const downloaded = (modcache: string, file: string) => join(modcache, `${helloPath}@v1.0.0`, file);

test("the go command downloads a module through the gateway, and a second empty module cache is filled from the gateway's cache", async () => {
  const gw = await gateway();
  const before = upstream.requests.length;
  const first = await goModDownload(gw, "example.test/Hello@v1.0.0");
  assert.equal(first.code, 0, first.stderr);
  assert.match(readFileSync(downloaded(first.modcache, "hello.go"), "utf8"), /return "hello"/);
  const fetched = upstream.requests.length - before;
  assert.ok(fetched >= 2, `the upstream was asked ${fetched} times`);
  await gw.quiet();
  assert.ok(gw.audits.every((a) => a.service === "goproxy" && a.action === "allow" && a.reasonCode === "proxied" && a.destinationHost === proxy));

  const audited = gw.audits.length;
  const second = await goModDownload(gw, "example.test/Hello@v1.0.0");
  assert.equal(second.code, 0, second.stderr);
  assert.ok(existsSync(downloaded(second.modcache, "go.mod")));
  assert.equal(upstream.requests.length - before, fetched);
  const secondAudits = gw.audits.slice(audited);
  assert.ok(secondAudits.length > 0);
  assert.deepEqual([...new Set(secondAudits.map((a) => `${a.action} ${a.reasonCode}`))], ["allow cached"]);
});

test("a stage that does not allow the proxy: the go command fails and the audit says host_not_allowed, also for what is cached", async () => {
  const gw = await gateway([{ host: "sum.test", ports: [upstream.port] }]);
  const denied = await goModDownload(gw, "example.test/Hello@v1.0.0");
  assert.notEqual(denied.code, 0);
  assert.match(denied.stderr, /403/);
  assert.ok(gw.audits.length > 0);
  assert.ok(gw.audits.every((a) => a.action === "deny" && a.reasonCode === "host_not_allowed" && a.destinationHost === `goproxy.test:${upstream.port}`));

  gw.setRules([{ host: "goproxy.test", ports: [upstream.port] }]);
  assert.equal((await gw.get(`/goproxy/${helloPath}/@v/v1.0.0.mod`)).status, 200);
  gw.setRules([]);
  const cachedButDenied = await gw.get(`/goproxy/${helloPath}/@v/v1.0.0.mod`);
  assert.equal(cachedButDenied.status, 403);
  assert.equal(gw.audits.at(-1)?.reasonCode, "host_not_allowed");
});

test("a cached zip stays what it was when the upstream later serves other bytes for the same version", async () => {
  await tree.publish(hello("v1.3.0"));
  const gw = await gateway();
  const zipPath = `/goproxy/${tree.path("example.test/Hello", "v1.3.0", "zip")}`;
  const original = await gw.get(zipPath);
  assert.equal(original.status, 200);
  await tree.publish(hello("v1.3.0", "tampered"));
  const again = await gw.get(zipPath);
  assert.deepEqual(again.body, original.body);
  assert.equal(gw.audits.at(-1)?.reasonCode, "cached");
  const download = await goModDownload(gw, "example.test/Hello@v1.3.0");
  assert.equal(download.code, 0, download.stderr);
  assert.match(readFileSync(join(download.modcache, `${helloPath}@v1.3.0`, "hello.go"), "utf8"), /return "hello"/);
});

test("a zip or .info that belongs to another version is refused and not cached", async () => {
  const gw = await gateway();
  const otherSources = join(work, "tree", "src", "example.test/Hello@v1.0.0");
  await writeModuleZip(otherSources, "example.test/Hello@v1.0.0/", join(tree.root, tree.path("example.test/Hello", "v4.0.0", "zip")));
  await writeTreeFile(tree.root, tree.path("example.test/Hello", "v4.0.0", "info"), JSON.stringify({ Version: "v1.0.0", Time: "2024-01-02T03:04:05Z" }));
  for (const ext of ["zip", "info", "zip"] as const) {
    const before = upstream.requests.length;
    const res = await gw.get(`/goproxy/${tree.path("example.test/Hello", "v4.0.0", ext)}`);
    assert.equal(res.status, 502, ext);
    assert.match(JSON.parse(res.body.toString()).message, /refused/);
    assert.equal(upstream.requests.length - before, 1, "each attempt asks the upstream again: nothing was cached");
  }
  assert.deepEqual(gw.audits.map((a) => a.reasonCode), ["upstream_error", "upstream_error", "upstream_error"]);
});

test("not found and gone pass through, so the go command can tell a missing version from a failure", async () => {
  const gw = await gateway();
  const missing = await gw.get(`/goproxy/${helloPath}/@v/v9.9.9.info`);
  assert.equal(missing.status, 404);
  upstream.statusOverrides.set(`${helloPath}/@v/v0.0.1.mod`, 410);
  const gone = await gw.get(`/goproxy/${helloPath}/@v/v0.0.1.mod`);
  assert.equal(gone.status, 410);
  const unknownBranch = await gw.get(`/goproxy/${helloPath}/@v/main.info`);
  assert.equal(unknownBranch.status, 404);
  const download = await goModDownload(gw, "example.test/Hello@v9.9.9");
  assert.notEqual(download.code, 0);
  assert.match(download.stderr, /v9\.9\.9|not found/);
  assert.ok(gw.audits.every((a) => a.action === "allow"));
});

test("the version list and @latest are cached for a minute, then fetched again, and served stale when the upstream is unreachable", async (t) => {
  t.mock.timers.enable({ apis: ["Date"], now: Date.now() });
  const flaky = await serveGoProxyTree(tree.root, certs);
  const gw = await startTestGateway(suite.after, {
    rules: [{ host: "goproxy.test", ports: [flaky.port] }],
    hosts: { "goproxy.test": "127.0.0.1" },
    settings: { upstreamCaFile: certs.caFile, goProxy: `goproxy.test:${flaky.port}` },
  });
  const list = `/goproxy/${helloPath}/@v/list`;
  const first = await gw.get(list);
  assert.match(first.body.toString(), /^v1\.0\.0\nv1\.1\.0\n/);
  await gw.get(list);
  assert.equal(flaky.requests.length, 1);
  await tree.publish(hello("v1.2.0"));
  t.mock.timers.tick(61_000);
  const refreshed = await gw.get(list);
  assert.match(refreshed.body.toString(), /v1\.2\.0/);
  assert.equal(flaky.requests.length, 2);
  await flaky.close();
  t.mock.timers.tick(61_000);
  const stale = await gw.get(list);
  assert.equal(stale.status, 200);
  assert.deepEqual(stale.body, refreshed.body);
  assert.deepEqual(gw.audits.map((a) => a.reasonCode), ["proxied", "cached", "proxied", "cached"]);
  const latestWithoutCopy = await gw.get(`/goproxy/${helloPath}/@latest`);
  assert.equal(latestWithoutCopy.status, 502);
});

test("the checksum database is supported exactly when the stage allows its host", async () => {
  const gw = await gateway([{ host: "goproxy.test", ports: [upstream.port] }, { host: "sum.test", ports: [upstream.port] }]);
  const allowed = await gw.get(`/goproxy/sumdb/${sumdb}/supported`);
  assert.equal(allowed.status, 200);
  const other = await gw.get("/goproxy/sumdb/sum.golang.org/supported");
  assert.equal(other.status, 404, "404 makes Go contact the database directly, which the network policy decides");
  assert.deepEqual(gw.audits.map((a) => [a.action, a.reasonCode, a.destinationHost]), [
    ["allow", "proxied", sumdb],
    ["deny", "host_not_allowed", "sum.golang.org"],
  ]);
  assert.equal(gw.audits[0]?.service, "sumdb");
});

test("checksum database lookups and the latest tree are proxied each time, full tiles are cached", async () => {
  const lookup = `lookup/${helloPath}@v1.0.0`;
  await writeTreeFile(tree.root, lookup, "12\nexample.test/Hello v1.0.0 h1:abc=\n\ngo.sum database tree\n");
  await writeTreeFile(tree.root, "latest", "go.sum database tree\n34\nroot=\n");
  await writeTreeFile(tree.root, "tile/8/0/000", Buffer.alloc(8192, 7));
  await writeTreeFile(tree.root, "tile/8/0/001.p/5", Buffer.alloc(160, 9));
  const gw = await gateway([{ host: "sum.test", ports: [upstream.port] }]);
  const before = upstream.requests.length;
  for (const path of [lookup, lookup, "latest", "tile/8/0/001.p/5", "tile/8/0/000", "tile/8/0/000"]) {
    const res = await gw.get(`/goproxy/sumdb/${sumdb}/${path}`);
    assert.equal(res.status, 200, path);
    assert.deepEqual(res.body, readFileSync(join(tree.root, path)), path);
  }
  assert.equal(upstream.requests.length - before, 5);
  assert.deepEqual(gw.audits.map((a) => `${a.service} ${a.reasonCode}`), ["sumdb proxied", "sumdb proxied", "sumdb proxied", "sumdb proxied", "sumdb proxied", "sumdb cached"]);
  const denied = await (await gateway()).get(`/goproxy/sumdb/${sumdb}/latest`);
  assert.equal(denied.status, 403);
});

test("a configured credential goes to the proxy and never back to the guest", async () => {
  const secret = "go-proxy-secret-token";
  const gw = await gateway(undefined, { GOPROXY_TEST_TOKEN: secret });
  const before = upstream.requests.length;
  const res = await gw.get(`/goproxy/${helloPath}/@v/v1.1.0.info`);
  assert.equal(res.status, 200);
  assert.equal(upstream.authorizations[before], `Bearer ${secret}`);
  assert.ok(!res.body.toString().includes(secret) && !JSON.stringify(res.headers).includes(secret));
});

test("paths that are not GOPROXY requests, malformed module paths and versions, and other methods are refused", async () => {
  const gw = await gateway();
  const invalid = [
    "/goproxy/example.test/Hello/@v/list", // upper case must be encoded
    "/goproxy/example.test/!!hello/@v/list",
    "/goproxy/nodot/hello/@v/list",
    "/goproxy/example.test/.hidden/@v/list",
    "/goproxy/example.test/hello./@v/list",
    "/goproxy/-example.test/hello/@v/list",
    "/goproxy/example.test/he%20llo/@v/list",
    `/goproxy/example.test/${"a".repeat(600)}/@v/list`,
    `/goproxy/${helloPath}/@v/v1.0.zip`, // .zip needs a canonical version
    `/goproxy/${helloPath}/@v/v1.0.0.tar`,
    `/goproxy/${helloPath}/@v/${"v1.0.0-".padEnd(200, "a")}.info`,
    `/goproxy/${helloPath}/@v/`,
    `/goproxy/${helloPath}`,
    "/goproxy/sumdb/sum.test/lookup/not-a-module",
    "/goproxy/sumdb/sum.test/tile/8/0/../000",
    "/goproxy/sumdb/sum.test/tile/8/0/abc",
    "/goproxy/sumdb/sum.test/other",
    "/goproxy/sumdb/bad_host!/latest",
  ];
  for (const path of invalid) {
    const res = await gw.get(path);
    assert.equal(res.status, 400, path);
    assert.equal(JSON.parse(res.body.toString()).reason_code, "invalid_request", path);
  }
  const post = await gw.get(`/goproxy/${helloPath}/@v/list`, { method: "POST", body: "x" });
  assert.equal(post.status, 405);
  const sumdbPost = await gw.get(`/goproxy/sumdb/${sumdb}/latest`, { method: "POST", body: "x" });
  assert.equal(sumdbPost.status, 405);
  assert.ok(gw.audits.every((a) => a.action === "deny"));
});
