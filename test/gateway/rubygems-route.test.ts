import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { gzipSync } from "node:zlib";
import { create as createTar, list as listTar } from "tar";
import { checksumFromInfo, nameSplits } from "../../src/gateway/routes/rubygems.ts";
import { suiteCleanup } from "../fixtures/cleanup.ts";
import { startTestGateway, type TestGateway } from "../fixtures/gateway.ts";
import { testCertificates } from "../fixtures/tls.ts";

const suite = suiteCleanup();
const certs = testCertificates(["gems.test"]);
suite.after(() => certs.remove());
const work = mkdtempSync(join(tmpdir(), "cleanroom-rubygems-"));
suite.after(() => rmSync(work, { recursive: true, force: true }));

const sha256 = (bytes: Buffer | string) => createHash("sha256").update(bytes).digest("hex");

/** A real .gem: a plain tar of metadata.gz (the YAML gemspec), data.tar.gz (the files) and checksums.yaml.gz. */
async function buildGem(name: string, version: string): Promise<Buffer> {
  const dir = join(work, `${name}-${version}`);
  mkdirSync(join(dir, "data", "lib"), { recursive: true });
  mkdirSync(join(dir, "gem"));
  writeFileSync(join(dir, "data", "lib", `${name}.rb`), `module Greeter\n  def self.hello = "hello from ${version}"\nend\n`);
  await createTar({ gzip: true, portable: true, cwd: join(dir, "data"), file: join(dir, "gem", "data.tar.gz") }, ["lib"]);
  const gemspec = [
    "--- !ruby/object:Gem::Specification",
    `name: ${name}`,
    "version: !ruby/object:Gem::Version",
    `  version: ${version}`,
    "platform: ruby",
    "authors:\n- Cleanroom tests",
    "require_paths:\n- lib",
    `files:\n- lib/${name}.rb`,
    "summary: a gem built by the gateway tests",
    "",
  ].join("\n");
  writeFileSync(join(dir, "gem", "metadata.gz"), gzipSync(gemspec));
  const digests = (algorithm: "sha256" | "sha512") =>
    ["metadata.gz", "data.tar.gz"].map((file) => `  ${file}: ${createHash(algorithm).update(readFileSync(join(dir, "gem", file))).digest("hex")}`).join("\n");
  writeFileSync(join(dir, "gem", "checksums.yaml.gz"), gzipSync(`---\nSHA256:\n${digests("sha256")}\nSHA512:\n${digests("sha512")}\n`));
  const gemFile = join(dir, `${name}-${version}.gem`);
  await createTar({ portable: true, cwd: join(dir, "gem"), file: gemFile }, ["metadata.gz", "data.tar.gz", "checksums.yaml.gz"]);
  return readFileSync(gemFile);
}

const gem = await buildGem("greeter", "1.0.0");
const otherGem = await buildGem("greeter", "2.0.0");

/** The upstream's documents by path, with ETags; the compact index the way rubygems.org lays it out. */
const documents = new Map<string, Buffer>();
function publishIndex(infoLines: string[]): void {
  const info = `---\n${infoLines.join("\n")}\n`;
  documents.set("info/greeter", Buffer.from(info));
  documents.set("versions", Buffer.from(`created_at: 2024-01-02T03:04:05Z\n---\ngreeter ${infoLines.map((l) => l.split(" ")[0]).join(",")} ${createHash("md5").update(info).digest("hex")}\n`));
}
publishIndex([`1.0.0 |checksum:${sha256(gem)},ruby:>= 2.7`, `2.0.0 |checksum:${sha256(otherGem)}`]);
documents.set("names", Buffer.from("---\ngreeter\n"));
documents.set("gems/greeter-1.0.0.gem", gem);
// what a compromised or broken upstream might send for 2.0.0: the 1.0.0 gem, which /info does not list for it
documents.set("gems/greeter-2.0.0.gem", gem);
documents.set("gems/unlisted-1.0.0.gem", otherGem);
documents.set("quick/Marshal.4.8/greeter-1.0.0.gemspec.rz", Buffer.from("x\x9c marshalled gemspec stand-in"));
documents.set("specs.4.8.gz", gzipSync("specs index stand-in"));

const requests: { path: string; ifNoneMatch: string | undefined }[] = [];
const etagOf = (body: Buffer) => `"${sha256(body).slice(0, 16)}"`;
const upstream = createServer({ key: certs.key, cert: certs.cert }, (req, res) => {
  const path = decodeURIComponent(new URL(req.url ?? "/", "https://gems.test").pathname).slice(1);
  requests.push({ path, ifNoneMatch: req.headers["if-none-match"] });
  const body = documents.get(path);
  if (!body) return res.writeHead(404).end("Not Found\n");
  const etag = etagOf(body);
  if (req.headers["if-none-match"] === etag) return res.writeHead(304, { etag }).end();
  res.writeHead(200, { etag, "content-type": path.endsWith(".gem") ? "application/octet-stream" : "text/plain; charset=utf-8", "content-length": body.length }).end(body);
});
await new Promise<void>((ready) => upstream.listen(0, "127.0.0.1", ready));
suite.after(() => new Promise((done) => upstream.close(done)));
const port = (upstream.address() as AddressInfo).port;
const authority = `gems.test:${port}`;

function gateway(rules = [{ host: "gems.test", ports: [port] }]): Promise<TestGateway> {
  return startTestGateway(suite.after, {
    rules,
    hosts: { "gems.test": "127.0.0.1" },
    settings: { upstreamCaFile: certs.caFile, rubygemsHost: authority },
  });
}

const asked = (path: string) => requests.filter((r) => r.path === path).length;

test("the test .gem is a real one: a plain tar of metadata, data and checksums", async () => {
  const entries: string[] = [];
  const listing = listTar({ onReadEntry: (entry) => void entries.push(entry.path) });
  const ended = new Promise((done) => listing.on("end", done));
  listing.end(gem);
  await ended;
  assert.deepEqual(entries, ["metadata.gz", "data.tar.gz", "checksums.yaml.gz"]);
});

test("a .gem is checked against the checksum its /info lists, fetched once and then served from the cache", async () => {
  const gw = await gateway();
  const gemsBefore = asked("gems/greeter-1.0.0.gem");
  const infoBefore = asked("info/greeter");
  const first = await gw.get("/rubygems/gems/greeter-1.0.0.gem");
  const second = await gw.get("/rubygems/gems/greeter-1.0.0.gem");
  assert.equal(first.status, 200);
  assert.deepEqual(first.body, gem);
  assert.deepEqual(second.body, gem);
  assert.equal(first.headers["x-cleanroom-digest"], `sha256:${sha256(gem)}`);
  assert.equal(asked("gems/greeter-1.0.0.gem") - gemsBefore, 1);
  assert.equal(asked("info/greeter") - infoBefore, 1);
  const head = await gw.get("/rubygems/gems/greeter-1.0.0.gem", { method: "HEAD" });
  assert.equal(head.headers["content-length"], String(gem.length));
  assert.equal(head.body.length, 0);
  assert.deepEqual(gw.audits.map((a) => [a.service, a.destinationHost, a.action, a.reasonCode]), [
    ["rubygems", authority, "allow", "proxied"],
    ["rubygems", authority, "allow", "cached"],
    ["rubygems", authority, "allow", "cached"],
  ]);
});

test("a .gem that does not match its listed checksum is refused and never cached", async () => {
  const gw = await gateway();
  for (let attempt = 0; attempt < 2; attempt++) {
    const before = asked("gems/greeter-2.0.0.gem");
    const res = await gw.get("/rubygems/gems/greeter-2.0.0.gem");
    assert.equal(res.status, 502);
    assert.match(JSON.parse(res.body.toString()).message, /checksum/);
    assert.equal(asked("gems/greeter-2.0.0.gem") - before, 1);
  }
  assert.deepEqual(gw.audits.map((a) => [a.reasonCode, a.destinationHost]), [["upstream_error", authority], ["upstream_error", authority]]);
  // a gem the index does not list has nothing to be checked against: it is passed on as the upstream has it
  const unlisted = await gw.get("/rubygems/gems/unlisted-1.0.0.gem");
  assert.equal(unlisted.status, 200);
});

test("the compact index keeps its ETag: a matching If-None-Match gets 304, and after a minute the upstream is asked again", async (t) => {
  t.mock.timers.enable({ apis: ["Date"], now: Date.now() });
  const gw = await gateway();
  const before = asked("versions");
  const first = await gw.get("/rubygems/versions");
  assert.equal(first.status, 200);
  assert.deepEqual(first.body, documents.get("versions"));
  const etag = String(first.headers.etag);
  const notModified = await gw.get("/rubygems/versions", { headers: { "if-none-match": etag } });
  assert.equal(notModified.status, 304);
  // Bundler asks for the tail it lacks; the whole document is a correct answer
  const ranged = await gw.get("/rubygems/versions", { headers: { range: "bytes=10-" } });
  assert.equal(ranged.status, 200);
  assert.deepEqual(ranged.body, first.body);
  assert.equal(asked("versions") - before, 1);

  t.mock.timers.tick(61_000);
  const revalidated = await gw.get("/rubygems/versions");
  assert.deepEqual(revalidated.body, first.body);
  assert.equal(requests.at(-1)?.ifNoneMatch, etag, "the gateway revalidates with the stored ETag");
  publishIndex([`1.0.0 |checksum:${sha256(gem)},ruby:>= 2.7`, `2.0.0 |checksum:${sha256(otherGem)}`, "2.1.0 |"]);
  t.mock.timers.tick(61_000);
  const changed = await gw.get("/rubygems/versions");
  assert.match(changed.body.toString(), /1\.0\.0,2\.0\.0,2\.1\.0/);
  assert.deepEqual(gw.audits.map((a) => `${a.status} ${a.reasonCode}`), ["200 proxied", "304 cached", "200 cached", "200 cached", "200 proxied"]);
});

test("names, info, quick gemspecs and the specs indexes are served; the gemspec is cached for good", async () => {
  const gw = await gateway();
  for (const path of ["names", "info/greeter", "specs.4.8.gz", "quick/Marshal.4.8/greeter-1.0.0.gemspec.rz", "quick/Marshal.4.8/greeter-1.0.0.gemspec.rz"]) {
    const res = await gw.get(`/rubygems/${path}`);
    assert.equal(res.status, 200, path);
    assert.deepEqual(res.body, documents.get(path), path);
  }
  assert.equal(gw.audits.at(-1)?.reasonCode, "cached");
  const missing = await gw.get("/rubygems/info/nosuchgem");
  assert.equal(missing.status, 404);
});

test("a stage that does not allow the RubyGems host gets host_not_allowed", async () => {
  const gw = await gateway([]);
  const res = await gw.get("/rubygems/versions");
  assert.equal(res.status, 403);
  assert.deepEqual(gw.audits.map((a) => [a.action, a.reasonCode, a.destinationHost]), [["deny", "host_not_allowed", authority]]);
});

test("other methods, invalid gem names and paths outside the Bundler protocol are refused", async () => {
  const gw = await gateway();
  for (const method of ["POST", "HEAD"] as const) {
    const res = await gw.get("/rubygems/versions", { method, ...(method === "POST" ? { body: "{}" } : {}) });
    assert.equal(res.status, method === "POST" ? 405 : 200);
  }
  const invalid = [
    "/rubygems/info/bad%20name",
    "/rubygems/info/123",
    "/rubygems/info/a%2fb",
    "/rubygems/info",
    "/rubygems/gems/nohyphen.gem",
    "/rubygems/gems/-1.0.0.gem",
    "/rubygems/gems/greeter-1.0.0.tar",
    `/rubygems/gems/${"a".repeat(400)}-1.0.gem`,
    "/rubygems/quick/Marshal.4.7/greeter-1.0.0.gemspec.rz",
    "/rubygems/api/v1/dependencies",
    "/rubygems/versions/",
    "/rubygems/",
  ];
  for (const path of invalid) {
    const res = await gw.get(path);
    assert.equal(res.status, 400, path);
    assert.equal(JSON.parse(res.body.toString()).reason_code, "invalid_request", path);
  }
  assert.deepEqual(gw.audits.map((a) => a.reasonCode).slice(0, 2), ["method_not_allowed", "proxied"]);
});

test("gem file names split into name and version the way /info lists versions, platform included", () => {
  assert.deepEqual(nameSplits("nokogiri-1.15.4-x86_64-linux"), [{ name: "nokogiri", version: "1.15.4-x86_64-linux" }]);
  assert.deepEqual(nameSplits("net-http2-0.18.5"), [{ name: "net-http2", version: "0.18.5" }]);
  assert.deepEqual(nameSplits("a-1-b-2.0").map((s) => s.name), ["a", "a-1-b"]);
  assert.deepEqual(nameSplits("nohyphen"), []);
  const info = "---\n1.0.0 |checksum:" + "a".repeat(64) + "\n1.0.0-java dep:>= 1|checksum:" + "b".repeat(64) + ",ruby:>= 2\n2.0.0 dep:>= 1|ruby:>= 2\n";
  assert.equal(checksumFromInfo(info, "1.0.0"), "a".repeat(64));
  assert.equal(checksumFromInfo(info, "1.0.0-java"), "b".repeat(64));
  assert.equal(checksumFromInfo(info, "2.0.0"), undefined);
  assert.equal(checksumFromInfo(info, "3.0.0"), undefined);
});
