import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { suiteCleanup } from "../fixtures/cleanup.ts";
import { startTestGateway } from "../fixtures/gateway.ts";
import { testCertificates } from "../fixtures/tls.ts";
import { runNpm, startTestNpmRegistry, type RegistryRequest } from "./npm-registry.ts";

const suite = suiteCleanup();
const certs = testCertificates(["npm.test"]);
suite.after(() => certs.remove());
const registry = await startTestNpmRegistry(suite.after, {
  certs,
  host: "npm.test",
  packages: [
    { name: "cr-words", version: "1.0.0", main: 'exports.hello = "hi";\n' },
    { name: "cr-words", version: "1.1.0", main: 'exports.hello = "hello";\n' },
    { name: "@cr/greet", version: "1.0.0", dependencies: { "cr-words": "^1.0.0" }, main: 'module.exports = (who) => `${require("cr-words").hello}, ${who}`;\n' },
    { name: "cr-app", version: "1.0.0", dependencies: { "@cr/greet": "^1.0.0", "cr-words": "^1.0.0" }, main: 'module.exports = require("@cr/greet")("world");\n' },
    { name: "cr-broken", version: "1.0.0", corrupt: true },
    { name: "cr-mirrored", version: "1.0.0", tarballUrl: "https://cdn.test/cr-mirrored/-/cr-mirrored-1.0.0.tgz" },
  ],
});
const { authority } = registry;
const work = mkdtempSync(join(tmpdir(), "cleanroom-npm-route-"));
suite.after(() => rmSync(work, { recursive: true, force: true }));
const ABBREVIATED = { accept: "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8, */*" };

async function gateway(opts: { rules?: { host: string; ports: number[] }[]; env?: NodeJS.ProcessEnv } = {}) {
  return startTestGateway(suite.after, {
    rules: opts.rules ?? [{ host: "npm.test", ports: [registry.port] }],
    hosts: { "npm.test": "127.0.0.1", "cdn.test": "127.0.0.1" },
    settings: { upstreamCaFile: certs.caFile, credentialEnv: { "npm.test": "NPM_TEST_TOKEN" } },
    env: opts.env ?? {},
    publicHost: "127.0.0.1",
  });
}

let projects = 0;
/** `npm install <deps>` in a new project with a new npm cache, through the gateway at `base`. */
async function npmInstall(base: string, dependencies: Record<string, string>) {
  const dir = join(work, `project-${++projects}`);
  mkdirSync(dir);
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: `project-${projects}`, version: "1.0.0", dependencies }));
  const args = ["install", "--registry", `${base}/npm/${authority}/`, "--cache", join(dir, ".npm-cache"), "--fetch-retries=0", "--no-audit", "--no-fund"];
  return { dir, ...(await runNpm(args, { cwd: dir, home: join(dir, ".home") })) };
}

function countsByUrl(requests: RegistryRequest[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const r of requests) counts[`${r.method} ${r.url}`] = (counts[`${r.method} ${r.url}`] ?? 0) + 1;
  return counts;
}

const appInstallRequests = {
  "GET /cr-app": 1,
  "GET /@cr%2fgreet": 1,
  "GET /cr-words": 1,
  "GET /cr-app/-/cr-app-1.0.0.tgz": 1,
  "GET /@cr/greet/-/greet-1.0.0.tgz": 1,
  "GET /cr-words/-/cr-words-1.1.0.tgz": 1,
};

test("npm install through the gateway works and the upstream sees each packument and tarball once", async () => {
  const gw = await gateway();
  const before = registry.requests.length;
  const install = await npmInstall(gw.base, { "cr-app": "^1.0.0" });
  assert.equal(install.code, 0, install.stderr);
  const greeting = execFileSync(process.execPath, ["-e", 'process.stdout.write(require("cr-app"))'], { cwd: install.dir, encoding: "utf8" });
  assert.equal(greeting, "hello, world");
  assert.deepEqual(countsByUrl(registry.requests.slice(before)), appInstallRequests);
  assert.ok(gw.audits.every((a) => a.service === "npm" && a.action === "allow" && a.reasonCode === "proxied" && a.destinationHost === authority));
});

test("a second install with an empty npm cache is served entirely from the gateway", async () => {
  const gw = await gateway();
  assert.equal((await npmInstall(gw.base, { "cr-app": "^1.0.0" })).code, 0);
  const before = registry.requests.length;
  await gw.quiet();
  const audited = gw.audits.length;
  const again = await npmInstall(gw.base, { "cr-app": "^1.0.0" });
  assert.equal(again.code, 0, again.stderr);
  assert.equal(registry.requests.length, before);
  assert.deepEqual(gw.audits.slice(audited).map((a) => a.reasonCode), Array(6).fill("cached"));
});

test("a tarball whose bytes do not match its integrity is refused, fails the install and is not cached", async () => {
  const gw = await gateway();
  const install = await npmInstall(gw.base, { "cr-broken": "1.0.0" });
  assert.notEqual(install.code, 0);
  const refused = gw.audits.find((a) => a.path.endsWith(".tgz"));
  assert.deepEqual([refused?.action, refused?.reasonCode, refused?.status], ["deny", "upstream_error", 502]);
  const again = await gw.get(`/npm/${authority}/cr-broken/-/cr-broken-1.0.0.tgz`);
  assert.equal(again.status, 502);
  assert.match(again.body.toString(), /does not match/);
  assert.equal(registry.requests.filter((r) => r.url === "/cr-broken/-/cr-broken-1.0.0.tgz").length, 2);
});

test("a registry the stage does not allow is refused with host_not_allowed before anything is fetched", async () => {
  const gw = await gateway({ rules: [{ host: "npm.test", ports: [443] }] });
  const before = registry.requests.length;
  const install = await npmInstall(gw.base, { "cr-app": "^1.0.0" });
  assert.notEqual(install.code, 0);
  assert.deepEqual(gw.audits.map((a) => [a.action, a.reasonCode, a.destinationHost]), [["deny", "host_not_allowed", `${authority}`]]);
  assert.equal(registry.requests.length, before);
});

test("npm publish is refused with method_not_allowed and never reaches the upstream", async () => {
  const gw = await gateway();
  const dir = join(work, "to-publish");
  mkdirSync(dir);
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "cr-new", version: "1.0.0" }));
  const registryUrl = `${gw.base}/npm/${authority}/`;
  writeFileSync(join(dir, ".npmrc"), `${registryUrl.replace(/^http:/, "")}:_authToken=guest-token\n`);
  const before = registry.requests.length;
  const publish = await runNpm(["publish", "--registry", registryUrl, "--fetch-retries=0"], { cwd: dir, home: join(dir, ".home") });
  assert.notEqual(publish.code, 0);
  assert.match(publish.stderr, /405/);
  assert.deepEqual(gw.audits.map((a) => [a.method, a.reasonCode]), [["PUT", "method_not_allowed"]]);
  assert.equal(registry.requests.length, before);
});

test("scoped packuments are served for @scope%2fname and @scope/name, tarball URLs on the same upstream rewritten", async () => {
  const gw = await gateway();
  const encoded = await gw.get(`/npm/${authority}/@cr%2fgreet`, { headers: ABBREVIATED });
  const plain = await gw.get(`/npm/${authority}/@cr/greet`, { headers: ABBREVIATED });
  assert.equal(encoded.status, 200);
  assert.deepEqual(plain.body, encoded.body);
  const dist = JSON.parse(encoded.body.toString()).versions["1.0.0"].dist;
  assert.equal(dist.tarball, `${gw.base}/npm/${authority}/@cr/greet/-/greet-1.0.0.tgz`);
  assert.equal(dist.integrity, registry.tarball("greet-1.0.0.tgz").integrity);
  const mirrored = await gw.get(`/npm/${authority}/cr-mirrored`);
  assert.equal(JSON.parse(mirrored.body.toString()).versions["1.0.0"].dist.tarball, "https://cdn.test/cr-mirrored/-/cr-mirrored-1.0.0.tgz");
  assert.deepEqual(gw.audits.map((a) => a.reasonCode), ["proxied", "cached", "proxied"]);
});

test("abbreviated and full packuments are cached apart, each in the variant the guest asked for", async () => {
  const gw = await gateway();
  const before = registry.requests.length;
  const full = await gw.get(`/npm/${authority}/cr-words`, { headers: { accept: "application/json" } });
  const abbreviated = await gw.get(`/npm/${authority}/cr-words`, { headers: ABBREVIATED });
  await gw.get(`/npm/${authority}/cr-words`, { headers: { accept: "application/json" } });
  await gw.get(`/npm/${authority}/cr-words`, { headers: ABBREVIATED });
  assert.equal(full.headers["content-type"], "application/json");
  assert.equal(abbreviated.headers["content-type"], "application/vnd.npm.install-v1+json");
  assert.ok(JSON.parse(full.body.toString()).time, "the full packument has its time map");
  assert.equal(JSON.parse(abbreviated.body.toString()).time, undefined);
  assert.deepEqual(registry.requests.slice(before).map((r) => r.accept?.startsWith("application/vnd.npm.install-v1+json") ? "abbreviated" : "full"), ["full", "abbreviated"]);
  assert.deepEqual(gw.audits.map((a) => a.reasonCode), ["proxied", "proxied", "cached", "cached"]);
});

test("after five minutes a packument is revalidated with its ETag, and served stale while the upstream is down", async (t) => {
  const gw = await gateway();
  await gw.get(`/npm/${authority}/cr-app`, { headers: ABBREVIATED });
  const before = registry.requests.length;
  t.mock.timers.enable({ apis: ["Date"], now: Date.now() + 6 * 60_000 });
  const revalidated = await gw.get(`/npm/${authority}/cr-app`, { headers: ABBREVIATED });
  assert.equal(revalidated.status, 200);
  assert.match(registry.requests[before]?.ifNoneMatch ?? "", /^"[a-f0-9]{40}"$/);
  t.mock.timers.tick(6 * 60_000);
  registry.setReachable(false);
  t.after(() => registry.setReachable(true));
  const stale = await gw.get(`/npm/${authority}/cr-app`, { headers: ABBREVIATED });
  assert.equal(stale.status, 200);
  assert.deepEqual(stale.body, revalidated.body);
  assert.deepEqual(gw.audits.map((a) => a.reasonCode), ["proxied", "cached", "cached"]);
});

test("a tarball of a version its packument does not list is refused with 404 and never fetched", async () => {
  const gw = await gateway();
  const res = await gw.get(`/npm/${authority}/cr-words/-/cr-words-9.9.9.tgz`);
  assert.equal(res.status, 404);
  assert.equal(JSON.parse(res.body.toString()).reason_code, "invalid_request");
  assert.ok(!registry.requests.some((r) => r.url.includes("9.9.9")));
});

test("a configured registry token reaches the upstream for packuments and tarballs; the guest's never does", async () => {
  const gw = await gateway({ env: { NPM_TEST_TOKEN: "s3cret-npm-token" } });
  const before = registry.requests.length;
  const guest = { ...ABBREVIATED, authorization: "Bearer guest-token" };
  assert.equal((await gw.get(`/npm/${authority}/cr-words`, { headers: guest })).status, 200);
  const tgz = await gw.get(`/npm/${authority}/cr-words/-/cr-words-1.0.0.tgz`, { headers: guest });
  assert.equal(tgz.status, 200);
  assert.deepEqual(registry.requests.slice(before).map((r) => r.authorization), ["Bearer s3cret-npm-token", "Bearer s3cret-npm-token"]);
});

test("names npm could not have published, other registry paths and other methods are refused", async () => {
  const gw = await gateway();
  for (const name of [".hidden", "_private", "a%20b", "@cr", "-/v1/search", "a".repeat(215), "cr-words%2fx"]) {
    const res = await gw.get(`/npm/${authority}/${name}`);
    assert.equal(res.status, 400, name);
  }
  assert.equal((await gw.get(`/npm/${authority}/cr-words/1.0.0`)).status, 404);
  assert.equal((await gw.get(`/npm/${authority}/-/npm/v1/security/advisories/bulk`, { method: "POST", body: "{}" })).status, 405);
  assert.ok(gw.audits.every((a) => a.action === "deny"));
});
