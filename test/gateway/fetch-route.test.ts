import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { suiteCleanup } from "../fixtures/cleanup.ts";
import { startTestGateway } from "../fixtures/gateway.ts";
import { testCertificates } from "../fixtures/tls.ts";

const suite = suiteCleanup();
const certs = testCertificates(["files.test"]);
suite.after(() => certs.remove());
const artifact = Buffer.from("release bytes\n".repeat(1000));
const requests: { url: string; authorization: string | undefined }[] = [];
const upstream = createHttpsServer({ key: certs.key, cert: certs.cert }, (req, res) => {
  requests.push({ url: req.url ?? "", authorization: req.headers.authorization });
  if (req.url === "/tool/v1.tar.gz") return res.writeHead(200, { "content-type": "application/gzip" }).end(artifact);
  if (req.url === "/moved") return res.writeHead(302, { location: "https://elsewhere.test/tool/v1.tar.gz" }).end();
  res.writeHead(404).end("no such file");
});
await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
suite.after(() => new Promise((r) => upstream.close(r)));
const port = (upstream.address() as AddressInfo).port;
const authority = `files.test:${port}`;

async function gateway(env: NodeJS.ProcessEnv = {}) {
  return startTestGateway(suite.after, {
    rules: [{ host: "files.test", ports: [port] }],
    hosts: { "files.test": "127.0.0.1", "elsewhere.test": "127.0.0.1" },
    settings: { upstreamCaFile: certs.caFile, credentialEnv: { "files.test": "FILES_TOKEN" } },
    env,
  });
}

test("a download is fetched once and then served from the cache", async () => {
  const gw = await gateway();
  const before = requests.length;
  const first = await gw.get(`/fetch/${authority}/tool/v1.tar.gz`);
  const second = await gw.get(`/fetch/${authority}/tool/v1.tar.gz`);
  assert.equal(first.status, 200);
  assert.deepEqual(first.body, artifact);
  assert.deepEqual(second.body, artifact);
  assert.equal(requests.length - before, 1);
  assert.deepEqual(gw.audits.map((a) => [a.service, a.destinationHost, a.action, a.reasonCode]), [
    ["fetch", authority, "allow", "proxied"],
    ["fetch", authority, "allow", "cached"],
  ]);
});

test("a download whose bytes do not match the expected sha256 is refused and not cached", async () => {
  const gw = await gateway();
  const wrong = createHash("sha256").update("something else").digest("hex");
  const res = await gw.get(`/fetch/${authority}/tool/v1.tar.gz`, { headers: { "x-cleanroom-expected-sha256": wrong } });
  assert.equal(res.status, 502);
  assert.match(res.body.toString(), /does not match/);
  const right = createHash("sha256").update(artifact).digest("hex");
  const ok = await gw.get(`/fetch/${authority}/tool/v1.tar.gz`, { headers: { "x-cleanroom-expected-sha256": right } });
  assert.equal(ok.status, 200);
});

test("a host the stage does not allow is refused with host_not_allowed, also when reached by a redirect", async () => {
  const gw = await gateway();
  const denied = await gw.get(`/fetch/elsewhere.test:${port}/tool/v1.tar.gz`);
  assert.equal(denied.status, 403);
  assert.equal(JSON.parse(denied.body.toString()).reason_code, "host_not_allowed");
  const redirected = await gw.get(`/fetch/${authority}/moved`);
  assert.equal(redirected.status, 403);
  assert.deepEqual(gw.audits.map((a) => a.reasonCode), ["host_not_allowed", "host_not_allowed"]);
});

test("a configured credential reaches the upstream and never the guest", async () => {
  const secret = "s3cr3t-files-token";
  const gw = await gateway({ FILES_TOKEN: secret });
  const before = requests.length;
  const res = await gw.get(`/fetch/${authority}/tool/other-name-to-miss-the-cache`);
  assert.equal(res.status, 404);
  assert.equal(requests[before]?.authorization, `Bearer ${secret}`);
  assert.ok(!res.body.toString().includes(secret));
  assert.ok(!JSON.stringify(res.headers).includes(secret));
});

test("path traversal, Host-header confusion and other methods are refused", async () => {
  const gw = await gateway();
  for (const path of [`/fetch/${authority}/a/../../etc/passwd`, `/fetch/${authority}/%2e%2e/x`, `/fetch/${authority}/a%2f..%2fb`, `/fetch/${authority}//x`, `/fetch/user@${authority}/x`]) {
    const res = await gw.get(path);
    assert.equal(res.status, 400, path);
  }
  const confused = await gw.get(`/fetch/${authority}/tool/v1.tar.gz`, { headers: { host: `files.test:${port}` } });
  assert.equal(confused.status, 400);
  const post = await gw.get(`/fetch/${authority}/tool/v1.tar.gz`, { method: "POST", body: "x" });
  assert.equal(post.status, 405);
  assert.ok(gw.audits.every((a) => a.action === "deny"));
});

test("an upstream name that resolves to a private address is not dialled unless configured", async () => {
  const gw = await startTestGateway(suite.after, {
    rules: [{ host: "files.test", ports: [port] }],
    hosts: { "files.test": "127.0.0.1" },
    settings: { upstreamCaFile: certs.caFile, allowPrivateCidrs: [] },
  });
  const res = await gw.get(`/fetch/${authority}/tool/v1.tar.gz`);
  assert.equal(res.status, 403);
  assert.equal(gw.audits[0]?.reasonCode, "host_not_allowed");
});
