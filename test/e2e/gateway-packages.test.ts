// Package managers inside real sandboxes use the gateway with no change to their commands: npm (the real client in
// a Node image) against an npm registry, `go mod download` against a static GOPROXY, and an OCI pull through
// /registry/ from the loopback docker-registry. The upstreams run on the host's loopback; the gateway is told it
// may dial 127.0.0.1, and the DNS view maps their names there.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { before, test } from "node:test";
import { suiteCleanup } from "../fixtures/cleanup.ts";
import { runCli } from "../fixtures/daemon.ts";
import { startGatewayWorld, type GatewayWorld } from "../fixtures/gateway-world.ts";
import { ensureGoImage } from "../fixtures/go-image.ts";
import { ensureNodeImage } from "../fixtures/node-image.ts";
import { startRegistry, type TestRegistry } from "../fixtures/registry.ts";
import { testCertificates } from "../fixtures/tls.ts";
import { goProxyTree, serveGoProxyTree, type GoProxyServer } from "../gateway/go-proxy-tree.ts";
import { startTestNpmRegistry, type TestNpmRegistry } from "../gateway/npm-registry.ts";
import { skopeoPush } from "../image/helpers/env.ts";
import { tarOf, writeOciLayout } from "../image/helpers/oci-layout.ts";

const suite = suiteCleanup();
const certs = testCertificates(["npm.test", "goproxy.test", "files.test"]);
suite.after(() => certs.remove());
let world: GatewayWorld;
let npm: TestNpmRegistry;
let goproxy: GoProxyServer;
let registry: TestRegistry;
let manifestDigest: string;

before(async () => {
  npm = await startTestNpmRegistry(suite.after, {
    certs,
    host: "npm.test",
    packages: [
      { name: "cr-words", version: "1.1.0", main: 'exports.hello = "hello";\n' },
      { name: "@cr/greet", version: "1.0.0", dependencies: { "cr-words": "^1.0.0" }, main: 'module.exports = (who) => `${require("cr-words").hello}, ${who}`;\n' },
      { name: "cr-app", version: "1.0.0", dependencies: { "@cr/greet": "^1.0.0" }, main: 'module.exports = require("@cr/greet")("world");\n' },
      { name: "cr-broken", version: "1.0.0", corrupt: true },
    ],
  });
  const work = mkdtempSync(join(tmpdir(), "cleanroom-gw-packages-"));
  suite.after(() => rmSync(work, { recursive: true, force: true }));
  const tree = goProxyTree(join(work, "goproxy"));
  await tree.publish({ module: "example.test/hello", version: "v1.0.0", files: { "go.mod": "module example.test/hello\n\ngo 1.19\n", "hello.go": "package hello\n\nconst Greeting = \"hello\"\n" } });
  goproxy = await serveGoProxyTree(tree.root, certs);
  suite.after(() => goproxy.close());
  registry = await startRegistry(suite);
  const layout = join(work, "layout");
  manifestDigest = (await writeOciLayout(layout, "1", { layers: [tarOf([{ path: "hello.txt", data: "layer bytes\n" }])], env: ["PATH=/bin"] })).manifestDigest;
  await skopeoPush(layout, "1", `${registry.host}/tools/hello:1`);

  world = await startGatewayWorld(suite, {
    hosts: ["files.test"],
    gitHosts: [],
    certs,
    records: { "npm.test": "127.0.0.1", "goproxy.test": "127.0.0.1" },
    gatewayConfig: [
      "  npm:",
      `    registry: ${npm.authority}`,
      "  go:",
      `    proxy: goproxy.test:${goproxy.port}`,
      "  oci:",
      "    registries:",
      `      registry.test: ${registry.url}`,
    ].join("\n"),
  });
});

async function sandbox(allow: string[], image: string): Promise<string> {
  const created = await runCli(["create"], world.daemon.env, undefined, 120_000, world.repository(allow, image));
  assert.equal(created.code, 0, created.stderr);
  const id = created.stdout.trim();
  suite.after(() => world.daemon.cli(["sandbox", "rm", id]));
  return id;
}

const sh = (id: string, script: string) => world.daemon.cli(["exec", "--in", id, "--", "sh", "-c", script], { timeoutMs: 180_000 });

async function gatewayEvents(id: string): Promise<{ reason_code: string; attributes: Record<string, string> }[]> {
  const events = JSON.parse((await world.daemon.cli(["sandbox", "inspect", id, "--json"])).stdout).events as { type: string; reason_code: string; attributes: Record<string, string> }[];
  return events.filter((e) => e.type === "gateway_request");
}

const npmProject = (deps: Record<string, string>) =>
  `mkdir -p /tmp/p && cd /tmp/p && echo '${JSON.stringify({ name: "p", version: "1.0.0", dependencies: deps })}' > package.json && npm install --no-audit --no-fund --update-notifier=false --loglevel=error --fetch-retries=0`;

test("npm install in a sandbox goes through the gateway; a second sandbox is served from its cache", async () => {
  const image = await world.pinned(await ensureNodeImage(world.daemon));
  const first = await sandbox([npm.authority], image);
  const installed = await sh(first, `${npmProject({ "cr-app": "^1.0.0" })} && node -e 'console.log(require("cr-app"))'`);
  assert.equal(installed.code, 0, installed.stderr);
  assert.equal(installed.stdout.trim().split("\n").at(-1), "hello, world");
  const upstreamAfterFirst = npm.requests.length;
  assert.ok(upstreamAfterFirst >= 6, `the registry served the packuments and tarballs (${upstreamAfterFirst})`);

  const second = await sandbox([npm.authority], image);
  const again = await sh(second, `${npmProject({ "cr-app": "^1.0.0" })} && node -e 'console.log(require("cr-app"))'`);
  assert.equal(again.code, 0, again.stderr);
  assert.deepEqual(npm.requests.slice(upstreamAfterFirst), [], "nothing reached the registry the second time");
  const events = await gatewayEvents(second);
  assert.ok(events.length >= 6 && events.every((e) => e.attributes.service === "npm" && e.reason_code === "cached"), JSON.stringify(events));
});

test("a tarball whose bytes do not match its integrity is refused", async () => {
  const image = await world.pinned(await ensureNodeImage(world.daemon));
  const id = await sandbox([npm.authority], image);
  const res = await sh(id, npmProject({ "cr-broken": "1.0.0" }));
  assert.notEqual(res.code, 0);
  const events = await gatewayEvents(id);
  assert.ok(events.some((e) => e.reason_code === "upstream_error" && e.attributes.path?.endsWith(".tgz")), JSON.stringify(events));
});

test("go mod download in a sandbox goes through the gateway's module proxy", async () => {
  const image = await world.pinned(await ensureGoImage(world.daemon));
  const id = await sandbox([`goproxy.test:${goproxy.port}`], image);
  const res = await sh(id, "GOSUMDB=off GOFLAGS=-modcacherw go mod download -json example.test/hello@v1.0.0 && cat /root/go/pkg/mod/example.test/hello@v1.0.0/hello.go");
  assert.equal(res.code, 0, res.stderr);
  assert.match(res.stdout, /const Greeting = "hello"/);
  assert.ok(goproxy.requests.some((p) => p.endsWith("@v/v1.0.0.zip")));
  assert.ok((await gatewayEvents(id)).every((e) => e.attributes.service === "goproxy" && e.attributes.action === "allow"));
});

test("an OCI image is pulled through /registry/ by digest, every blob verified", async () => {
  const id = await sandbox(["registry.test:443"], world.baseImage);
  const accept = "application/vnd.oci.image.manifest.v1+json";
  const script = [
    "set -e",
    `base=$CLEANROOM_GATEWAY_URL/registry/registry.test/v2/tools/hello`,
    `curl -fsS -H 'Accept: ${accept}' $base/manifests/1 -o /tmp/manifest`,
    "sha256sum /tmp/manifest | cut -d' ' -f1",
    "for d in $(grep -o 'sha256:[a-f0-9]*' /tmp/manifest | sort -u); do curl -fsS $base/blobs/$d -o /tmp/blob; echo \"$d $(sha256sum /tmp/blob | cut -d' ' -f1)\"; done",
  ].join("\n");
  const res = await sh(id, script);
  assert.equal(res.code, 0, res.stderr);
  const [manifestSha, ...blobs] = res.stdout.trim().split("\n");
  assert.equal(`sha256:${manifestSha}`, manifestDigest);
  assert.ok(blobs.length >= 2);
  for (const line of blobs) {
    const [digest, actual] = line.split(" ");
    assert.equal(digest, `sha256:${actual}`);
  }
  const denied = await sh(id, "curl -s -o /dev/null -w '%{http_code}' $CLEANROOM_GATEWAY_URL/registry/other.test/v2/tools/hello/manifests/1");
  assert.equal(denied.stdout, "403");
});
