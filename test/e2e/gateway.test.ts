// The gateway from inside real sandboxes: real daemon, runc, nftables, DNS policy server, and an HTTPS upstream in
// a netns this suite makes. Guests use their ordinary tools (git, curl); the gateway is reached by name.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { join } from "node:path";
import { before, test } from "node:test";
import { suiteCleanup } from "../fixtures/cleanup.ts";
import { runCli } from "../fixtures/daemon.ts";
import { bareRepository, pushCommit, startGatewayWorld, type GatewayWorld } from "../fixtures/gateway-world.ts";

const suite = suiteCleanup();
const FILES_TOKEN = "files-token-7d1f0c9a1e";
const GIT_TOKEN = "git-token-55aa0b3c2f";
const artifact = "immutable release bytes\n".repeat(2000);
let world: GatewayWorld;
let bare: string;

before(async () => {
  world = await startGatewayWorld(suite, {
    hosts: ["git.test", "files.test", "denied.test"],
    gitHosts: ["git.test"],
    gatewayConfig: "  credentials:\n    env:\n      files.test: CLEANROOM_TEST_FILES_TOKEN\n      git.test: CLEANROOM_TEST_GIT_TOKEN",
    env: { CLEANROOM_TEST_FILES_TOKEN: FILES_TOKEN, CLEANROOM_TEST_GIT_TOKEN: GIT_TOKEN },
  });
  mkdirSync(join(world.root, "files.test", "tools"), { recursive: true });
  writeFileSync(join(world.root, "files.test", "tools", "tool-1.0.tar.gz"), artifact);
  bare = bareRepository(world.root, "git.test", "org/app.git", [{ "README.md": "hello from upstream\n" }]);
});

/** A kept sandbox for a repository whose policy allows `allow`. */
async function sandbox(allow: string[]): Promise<string> {
  const created = await runCli(["create"], world.daemon.env, undefined, 60_000, world.repository(allow));
  assert.equal(created.code, 0, created.stderr);
  const id = created.stdout.trim();
  suite.after(() => world.daemon.cli(["sandbox", "rm", id]));
  return id;
}

function sh(id: string, script: string) {
  return world.daemon.cli(["exec", "--in", id, "--", "sh", "-c", script]);
}

interface SandboxEvent { type: string; reason_code: string; attributes: Record<string, string> }
async function gatewayEvents(id: string): Promise<SandboxEvent[]> {
  const events = JSON.parse((await world.daemon.cli(["sandbox", "inspect", id, "--json"])).stdout).events as SandboxEvent[];
  return events.filter((e) => e.type === "gateway_request");
}

test("a sandbox reaches the gateway by name and a download is cached for the next sandbox", async () => {
  const first = await sandbox(["files.test:443"]);
  const url = "$CLEANROOM_GATEWAY_URL/fetch/files.test/tools/tool-1.0.tar.gz";
  const fetched = await sh(first, `curl -fsS ${url} | sha256sum`);
  assert.equal(fetched.code, 0, fetched.stderr);
  assert.equal(fetched.stdout.split(" ")[0], createHash("sha256").update(artifact).digest("hex"));
  const upstreamHits = () => world.upstreamRequests().filter((r) => r.path === "/tools/tool-1.0.tar.gz").length;
  assert.equal(upstreamHits(), 1);

  const second = await sandbox(["files.test:443"]);
  const again = await sh(second, `curl -fsS ${url} | wc -c`);
  assert.equal(again.stdout.trim(), String(artifact.length));
  assert.equal(upstreamHits(), 1, "the second sandbox was served from the gateway cache");
  const events = await gatewayEvents(second);
  assert.deepEqual(events.map((e) => [e.attributes.service, e.attributes.destination_host, e.attributes.action, e.reason_code]), [["fetch", "files.test", "allow", "cached"]]);
});

test("an upstream the policy does not allow is refused with host_not_allowed, reported as a warning", async () => {
  const id = await sandbox(["files.test:443"]);
  const res = await sh(id, "curl -sS -o /dev/stderr -w '%{http_code}' $CLEANROOM_GATEWAY_URL/fetch/denied.test/x");
  assert.equal(res.stdout, "403");
  assert.match(res.stderr, /"reason_code":"host_not_allowed"/);
  assert.match(res.stderr, /cleanroom: warning: gateway refused GET fetch denied\.test:443 \(host_not_allowed\)/);
  const events = await gatewayEvents(id);
  assert.equal(events.at(-1)?.reason_code, "host_not_allowed");
  assert.equal(world.upstreamRequests().filter((r) => r.host === "denied.test").length, 0);
});

test("git clone through the gateway mirror, and again from the mirror with the upstream down", async () => {
  const id = await sandbox(["git.test:443"]);
  const clone = await sh(id, "git clone -q https://git.test/org/app.git /tmp/app && cat /tmp/app/README.md && git -C /tmp/app log --format=%s");
  assert.equal(clone.code, 0, clone.stderr);
  assert.equal(clone.stdout, "hello from upstream\ncommit 1\n");

  pushCommit(bare, { "NEWS.md": "second\n" }, "commit 2");
  const refreshed = await sh(id, "git clone -q https://git.test/org/app.git /tmp/app2 && git -C /tmp/app2 log --format=%s");
  assert.equal(refreshed.stdout, "commit 2\ncommit 1\n", "the mirror is refreshed on demand");

  await world.stopUpstreamHttps();
  const other = await sandbox(["git.test:443"]);
  const offline = await sh(other, "git clone -q https://git.test/org/app.git /tmp/app && git -C /tmp/app log --format=%s");
  assert.equal(offline.code, 0, offline.stderr);
  assert.equal(offline.stdout, "commit 2\ncommit 1\n");
  const events = await gatewayEvents(other);
  assert.ok(events.some((e) => e.attributes.service === "git" && e.reason_code === "cached"), JSON.stringify(events));
});

test("host credentials reach the upstream and never the sandbox", async () => {
  const requests = world.upstreamRequests();
  const fileAuth = requests.find((r) => r.host === "files.test")?.authorization;
  assert.equal(fileAuth, `Bearer ${FILES_TOKEN}`);
  const gitAuth = requests.find((r) => r.host === "git.test")?.authorization;
  assert.equal(gitAuth, `Basic ${Buffer.from(`x-access-token:${GIT_TOKEN}`).toString("base64")}`);

  const id = await sandbox(["files.test:443", "git.test:443"]);
  const script = [
    "curl -sS -D - $CLEANROOM_GATEWAY_URL/fetch/files.test/tools/tool-1.0.tar.gz -o /tmp/body",
    "curl -sS -D - $CLEANROOM_GATEWAY_URL/fetch/files.test/missing",
    "env",
    `grep -rlsF -e ${FILES_TOKEN} -e ${GIT_TOKEN} / --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev || true`,
    "cat /tmp/body >/dev/null",
  ].join("; ");
  const res = await sh(id, script);
  assert.ok(!res.stdout.includes(FILES_TOKEN) && !res.stdout.includes(GIT_TOKEN), "no secret in the sandbox's env, files or responses");
  assert.ok(!res.stderr.includes(FILES_TOKEN) && !res.stderr.includes(GIT_TOKEN));
  assert.match(res.stdout, /CLEANROOM_GATEWAY_URL=http:\/\/gateway\.cleanroom\.internal:\d+/);
});

test("traversal and Host-header confusion are refused; only sandboxes are served", async () => {
  const id = await sandbox(["files.test:443"]);
  const probe = (path: string, extra = "") => `curl -s -o /dev/null -w '%{http_code} ' --path-as-is ${extra} "$CLEANROOM_GATEWAY_URL${path}"`;
  const res = await sh(id, [
    probe("/fetch/files.test/tools/../../../etc/passwd"),
    probe("/fetch/files.test/%2e%2e/%2e%2e/etc/passwd"),
    probe("/fetch/files.test/tools/tool-1.0.tar.gz", "-H 'Host: files.test'"),
    probe("/fetch/files.test@denied.test/x"),
  ].join("; "));
  assert.equal(res.stdout.trim(), "400 400 400 400");
  const port = Number(/:(\d+)$/.exec((await sh(id, "echo $CLEANROOM_GATEWAY_URL")).stdout.trim())?.[1]);
  assert.equal(await hostConnectionAnswered(port), false, "a connection from the host itself is closed unanswered");
});

/** Whether the gateway answers an HTTP request from this (non-sandbox) process. */
function hostConnectionAnswered(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ host: "127.0.0.1", port, path: "/fetch/files.test/tools/tool-1.0.tar.gz", timeout: 3000 }, (res) => {
      res.resume();
      resolve(true);
    });
    req.on("error", () => resolve(false));
    req.on("timeout", () => req.destroy());
    req.end();
  });
}
