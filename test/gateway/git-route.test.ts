import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import type { GatewayCaller, GatewaySettings } from "../../src/gateway/index.ts";
import { suiteCleanup } from "../fixtures/cleanup.ts";
import { startTestGateway, type TestGateway } from "../fixtures/gateway.ts";
import { testCertificates } from "../fixtures/tls.ts";
import { startGitUpstream, type GitUpstream } from "./git-upstream.ts";

const suite = suiteCleanup();
const certs = testCertificates(["git.test"]);
suite.after(() => certs.remove());
const REPO = "org/repo.git";
const guestHome = mkdtempSync(join(tmpdir(), "cleanroom-git-guest-"));
suite.after(() => rmSync(guestHome, { recursive: true, force: true }));

interface World {
  upstream: GitUpstream;
  gw: TestGateway;
}

async function world(opts: { rules?: (port: number) => GatewayCaller["rules"]; settings?: GatewaySettings; env?: NodeJS.ProcessEnv; requireAuthorization?: string } = {}): Promise<World> {
  const upstream = await startGitUpstream(suite.after, {
    certs,
    name: "git.test",
    repos: [REPO],
    ...(opts.requireAuthorization ? { requireAuthorization: opts.requireAuthorization } : {}),
  });
  const gw = await startTestGateway(suite.after, {
    rules: opts.rules ? opts.rules(upstream.port) : [{ host: "git.test", ports: [upstream.port] }],
    hosts: { "git.test": "127.0.0.1" },
    settings: { upstreamCaFile: certs.caFile, ...opts.settings },
    env: opts.env ?? {},
  });
  return { upstream, gw };
}

/** git as a guest runs it: nothing configured but the insteadOf that sends https://<host>/ to the gateway. */
function guestGit({ upstream, gw }: World, args: string[], protocol = 2, tracePackets = false): Promise<{ code: number; stdout: string; stderr: string }> {
  const rewrite = `url.${gw.base}/git/${upstream.authority}/.insteadOf=https://${upstream.authority}/`;
  const env = { PATH: process.env.PATH, HOME: guestHome, GIT_CONFIG_NOSYSTEM: "1", GIT_TERMINAL_PROMPT: "0", GIT_ASKPASS: "", ...(tracePackets ? { GIT_TRACE_PACKET: "1" } : {}) };
  return new Promise((resolve) => {
    execFile("git", ["-c", rewrite, "-c", `protocol.version=${protocol}`, ...args], { env, timeout: 20_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: unknown }).code ?? 1) || 1 : 0, stdout: stdout.trim(), stderr });
    });
  });
}

async function guestClone(w: World, protocol = 2): Promise<{ code: number; stderr: string; commits: string[] }> {
  const dir = mkdtempSync(join(tmpdir(), "cleanroom-git-clone-"));
  suite.after(() => rmSync(dir, { recursive: true, force: true }));
  // the packet trace on stderr shows which protocol version the gateway actually spoke
  const clone = await guestGit(w, ["clone", "-q", `https://${w.upstream.authority}/${REPO}`, join(dir, "repo")], protocol, true);
  if (clone.code !== 0) return { code: clone.code, stderr: clone.stderr, commits: [] };
  const log = await guestGit(w, ["-C", join(dir, "repo"), "log", "--format=%H"]);
  return { code: 0, stderr: clone.stderr, commits: log.stdout.split("\n") };
}

const infoRefs = (w: World, repo = REPO) => `/git/${w.upstream.authority}/${repo}/info/refs?service=git-upload-pack`;
const reasons = (gw: TestGateway, from = 0) => gw.audits.slice(from).map((a) => a.reasonCode);

/** Every file under `dir`, recursively. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

test("a clone through the gateway has the upstream's commits, over protocol v2 and v0", async () => {
  const w = await world();
  const expected = await w.upstream.log(REPO);
  for (const protocol of [2, 0]) {
    const clone = await guestClone(w, protocol);
    assert.equal(clone.code, 0, clone.stderr);
    assert.deepEqual(clone.commits, expected);
    if (protocol === 2) assert.match(clone.stderr, /git< version 2/);
    else assert.doesNotMatch(clone.stderr, /version 2/);
  }
  assert.ok(w.gw.audits.length >= 4);
  assert.ok(w.gw.audits.every((a) => a.service === "git" && a.destinationHost === w.upstream.authority && a.action === "allow" && a.reasonCode === "mirrored"));
  const mirrors = readdirSync(join(w.gw.stateDir, "git", "mirrors"));
  assert.equal(mirrors.length, 2, "one bare mirror and the file naming its upstream");
  const urlFile = mirrors.find((name) => name.endsWith(".url"));
  assert.equal(readFileSync(join(w.gw.stateDir, "git", "mirrors", urlFile ?? ""), "utf8").trim(), `https://${w.upstream.authority}/${REPO}`);
});

test("info/refs speaks protocol v2 to a guest that asks for it and v0 to one that does not", async () => {
  const w = await world();
  const v2 = await w.gw.get(infoRefs(w), { headers: { "git-protocol": "version=2" } });
  assert.equal(v2.status, 200);
  assert.equal(v2.headers["content-type"], "application/x-git-upload-pack-advertisement");
  assert.match(v2.body.toString(), /version 2/);
  assert.doesNotMatch(v2.body.toString(), /refs\/heads\/main/);
  const v0 = await w.gw.get(infoRefs(w));
  assert.match(v0.body.toString(), /refs\/heads\/main/);
  assert.doesNotMatch(v0.body.toString(), /version 2/);
});

test("a commit pushed upstream shows up on the next clone", async () => {
  const w = await world();
  assert.equal((await guestClone(w)).code, 0);
  const added = await w.upstream.commit(REPO, "second commit");
  const next = await guestClone(w);
  assert.equal(next.code, 0, next.stderr);
  assert.equal(next.commits[0], added);
  assert.deepEqual(next.commits, await w.upstream.log(REPO));
});

test("concurrent clones of one repository share a single mirror refresh", async () => {
  const w = await world();
  const answers = await Promise.all([1, 2, 3].map(() => w.gw.get(infoRefs(w))));
  assert.deepEqual(answers.map((a) => a.status), [200, 200, 200]);
  assert.equal(w.upstream.requests.filter((r) => r.url.endsWith("/info/refs?service=git-upload-pack")).length, 1);
});

test("a fetch into a clone with many local commits (a gzipped upload-pack request) gets the new upstream commit", async () => {
  const w = await world();
  const dir = mkdtempSync(join(tmpdir(), "cleanroom-git-fetch-"));
  suite.after(() => rmSync(dir, { recursive: true, force: true }));
  assert.equal((await guestGit(w, ["clone", "-q", `https://${w.upstream.authority}/${REPO}`, dir])).code, 0);
  // enough "have" lines that git compresses the request body
  const future = Math.floor(Date.now() / 1000) + 3600; // newer than the shared history, so they are offered first
  const script = Array.from({ length: 300 }, (_, i) => `commit refs/heads/local\ncommitter Guest <guest@test> ${future + i} +0000\ndata 9\nlocal ${String(i).padStart(3, "0")}\n${i === 0 ? "from refs/heads/main^0\n" : ""}\n`).join("");
  await new Promise<void>((resolve, reject) => {
    const child = execFile("git", ["-C", dir, "fast-import", "--quiet"], { env: { PATH: process.env.PATH, HOME: guestHome } }, (err) => (err ? reject(err) : resolve()));
    child.stdin?.end(script);
  });
  const added = await w.upstream.commit(REPO, "upstream moved on");
  const fetch = await new Promise<string>((resolve) => {
    const rewrite = `url.${w.gw.base}/git/${w.upstream.authority}/.insteadOf=https://${w.upstream.authority}/`;
    const env = { PATH: process.env.PATH, HOME: guestHome, GIT_CONFIG_NOSYSTEM: "1", GIT_TRACE_CURL: "1", GIT_TRACE_CURL_NO_DATA: "1" };
    execFile("git", ["-c", rewrite, "-c", "protocol.version=0", "-C", dir, "fetch", "-q", "origin"], { env, timeout: 20_000 }, (_err, _out, stderr) => resolve(stderr));
  });
  assert.match(fetch, /Send header: Content-Encoding: gzip/i);
  const head = await guestGit(w, ["-C", dir, "rev-parse", "origin/main"]);
  assert.equal(head.stdout, added);
});

test("with the upstream down, a clone is served from the existing mirror", async () => {
  const w = await world();
  assert.equal((await guestClone(w)).code, 0);
  await w.upstream.stop();
  await w.gw.quiet();
  const audited = w.gw.audits.length;
  const offline = await guestClone(w);
  assert.equal(offline.code, 0, offline.stderr);
  assert.deepEqual(offline.commits, await w.upstream.log(REPO));
  assert.ok(reasons(w.gw, audited).length >= 2);
  assert.ok(reasons(w.gw, audited).every((r) => r === "cached"));
});

test("with the upstream down and no mirror yet, info/refs fails with upstream_error", async () => {
  const w = await world();
  await w.upstream.stop();
  const res = await w.gw.get(infoRefs(w));
  assert.equal(res.status, 502);
  assert.equal(JSON.parse(res.body.toString()).reason_code, "upstream_error");
  assert.deepEqual(readdirSync(join(w.gw.stateDir, "git", "mirrors")), []);
});

test("a host:port the stage does not allow is refused and never contacted", async () => {
  const w = await world({ rules: () => [{ host: "git.test", ports: [443] }] });
  const clone = await guestClone(w);
  assert.notEqual(clone.code, 0);
  await w.gw.quiet();
  assert.deepEqual(w.gw.audits.map((a) => [a.service, a.action, a.reasonCode, a.status]), [["git", "deny", "host_not_allowed", 403]]);
  assert.deepEqual(w.upstream.requests, []);
});

test("an upstream name that resolves to a private address is not dialled unless configured", async () => {
  const w = await world({ settings: { allowPrivateCidrs: [] } });
  const res = await w.gw.get(infoRefs(w));
  assert.equal(res.status, 403);
  assert.deepEqual(reasons(w.gw), ["host_not_allowed"]);
  assert.deepEqual(w.upstream.requests, []);
});

test("a push is refused with method_not_allowed and never reaches the upstream", async () => {
  const w = await world();
  const dir = mkdtempSync(join(tmpdir(), "cleanroom-git-push-"));
  suite.after(() => rmSync(dir, { recursive: true, force: true }));
  assert.equal((await guestGit(w, ["clone", "-q", `https://${w.upstream.authority}/${REPO}`, dir])).code, 0);
  assert.equal((await guestGit(w, ["-C", dir, "-c", "user.name=Guest", "-c", "user.email=guest@test", "commit", "-q", "--allow-empty", "-m", "guest change"])).code, 0);
  await w.gw.quiet();
  const audited = w.gw.audits.length;
  const push = await guestGit(w, ["-C", dir, "push", "origin", "HEAD:main"]);
  assert.notEqual(push.code, 0);
  assert.match(push.stderr, /405/);
  const direct = await w.gw.get(`/git/${w.upstream.authority}/${REPO}/git-receive-pack`, { method: "POST", headers: { "content-type": "application/x-git-receive-pack-request" }, body: "0000" });
  assert.equal(direct.status, 405);
  assert.deepEqual(w.gw.audits.slice(audited).map((a) => [a.action, a.reasonCode, a.status]), [["deny", "method_not_allowed", 405], ["deny", "method_not_allowed", 405]]);
  assert.ok(w.upstream.requests.every((r) => !r.url.includes("receive-pack")));
});

test("path traversal, odd repository names and non-fetch requests are refused", async () => {
  const w = await world();
  const a = w.upstream.authority;
  const q = "?service=git-upload-pack";
  for (const path of [
    `/git/${a}/org/../../etc/info/refs${q}`,
    `/git/${a}/org/%2e%2e/repo.git/info/refs${q}`,
    `/git/${a}/org/..%2f..%2frepo.git/info/refs${q}`,
    `/git/${a}/org/re%2fpo.git/info/refs${q}`,
    `/git/${a}/.hidden/repo.git/info/refs${q}`,
    `/git/${a}/org/repo%20x.git/info/refs${q}`,
    `/git/${a}/info/refs${q}`,
    `/git/${a}/${REPO}/info/refs`,
    `/git/${a}/${REPO}/info/refs?service=git-upload-pack&x=1`,
    `/git/${a}/${REPO}/HEAD`,
    `/git/${a}/${REPO}/objects/info/packs`,
    `/git/user@${a}/${REPO}/info/refs${q}`,
  ]) {
    const res = await w.gw.get(path);
    assert.equal(res.status, 400, path);
  }
  const wrongType = await w.gw.get(`/git/${a}/${REPO}/git-upload-pack`, { method: "POST", headers: { "content-type": "text/plain" }, body: "0000" });
  assert.equal(wrongType.status, 400);
  const head = await w.gw.get(infoRefs(w), { method: "HEAD" });
  assert.equal(head.status, 405);
  assert.ok(w.gw.audits.every((e) => e.action === "deny"));
  assert.deepEqual(w.upstream.requests, []);
});

test("a configured credential reaches the upstream as Basic auth and never the guest or the state dir", async () => {
  const secret = "git-test-token-7c41d9";
  const basic = `Basic ${Buffer.from(`x-access-token:${secret}`).toString("base64")}`;
  const w = await world({ settings: { credentialEnv: { "git.test": "GIT_TEST_TOKEN" } }, env: { GIT_TEST_TOKEN: secret }, requireAuthorization: basic });
  const clone = await guestClone(w);
  assert.equal(clone.code, 0, clone.stderr);
  assert.deepEqual(clone.commits, await w.upstream.log(REPO));
  assert.ok(w.upstream.requests.length >= 2);
  assert.ok(w.upstream.requests.every((r) => r.authorization === basic));
  const res = await w.gw.get(infoRefs(w), { headers: { "git-protocol": "version=2" } });
  for (const leak of [secret, basic.slice("Basic ".length)]) {
    assert.ok(!res.body.toString().includes(leak) && !JSON.stringify(res.headers).includes(leak));
    for (const file of filesUnder(w.gw.stateDir)) assert.ok(!readFileSync(file).includes(leak), `${file} holds the credential`);
  }
});

test("a host outside gateway.git.cache_hosts is proxied to the upstream without a mirror", async () => {
  const w = await world({ settings: { gitCacheHosts: ["other.test"] } });
  for (const protocol of [2, 0]) {
    const clone = await guestClone(w, protocol);
    assert.equal(clone.code, 0, clone.stderr);
    assert.deepEqual(clone.commits, await w.upstream.log(REPO));
  }
  assert.ok(reasons(w.gw).length >= 4 && reasons(w.gw).every((r) => r === "proxied"));
  assert.ok(w.upstream.requests.some((r) => r.method === "POST" && r.url === `/${REPO}/git-upload-pack`));
  assert.equal(existsSync(join(w.gw.stateDir, "git", "mirrors")), false);
});
