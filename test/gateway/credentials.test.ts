import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { jwtVerify } from "jose";
import { credentialChain, CredentialUnavailable } from "../../src/gateway/credentials.ts";
import { silentLogger } from "../../src/observability/index.ts";
import { suiteCleanup } from "../fixtures/cleanup.ts";

const suite = suiteCleanup();
const dir = mkdtempSync(join(tmpdir(), "cleanroom-credentials-"));
suite.after(() => rmSync(dir, { recursive: true, force: true }));
const GH = "git" + "hub.com";
const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const keyFile = join(dir, "app.pem");
// GitHub hands out PKCS#1 keys
writeFileSync(keyFile, privateKey.export({ type: "pkcs1", format: "pem" }));

let failMinting = false;
const mints: { path: string; issuer: unknown }[] = [];
const api = createServer((req, res) => {
  void (async () => {
    const jwt = (req.headers.authorization ?? "").replace(/^Bearer /, "");
    const { payload } = await jwtVerify(jwt, publicKey, { algorithms: ["RS256"] });
    mints.push({ path: req.url ?? "", issuer: payload.iss });
    if (failMinting) return res.writeHead(500).end("{}");
    res.writeHead(201, { "content-type": "application/json" }).end(JSON.stringify({ token: `ghs_minted${mints.length}`, expires_at: new Date(Date.now() + 3600_000).toISOString() }));
  })().catch(() => res.writeHead(401).end());
});
await new Promise<void>((r) => api.listen(0, "127.0.0.1", r));
suite.after(() => new Promise((r) => api.close(r)));
const apiBaseUrl = `http://127.0.0.1:${(api.address() as AddressInfo).port}`;

function chain(env: NodeJS.ProcessEnv = {}) {
  return credentialChain({
    env: { HOME: dir, ...env },
    tokenEnv: { "npm.corp.test": "CORP_NPM_TOKEN" },
    githubApp: { appId: "3817917", installationId: "42", privateKeyFile: keyFile, repoPrefixes: ["my-org/"], apiBaseUrl },
    logger: silentLogger(),
  });
}

test("a repository under a configured prefix gets a GitHub App installation token, minted once", async () => {
  const c = chain({ CLEANROOM_GITHUB_TOKEN: "env-token-not-used-here" });
  const before = mints.length;
  const git = await c.authorizationFor(new URL(`https://${GH}/my-org/app.git/info/refs`), "git");
  const again = await c.authorizationFor(new URL(`https://${GH}/My-Org/other`), "http");
  const token = `ghs_minted${before + 1}`;
  assert.equal(git, `Basic ${Buffer.from(`x-access-token:${token}`).toString("base64")}`);
  assert.equal(again, `Bearer ${token}`);
  assert.equal(mints.length, before + 1);
  assert.deepEqual(mints.at(-1), { path: "/app/installations/42/access_tokens", issuer: "3817917" });
});

test("when the App cannot mint, the request fails closed instead of falling back to another credential", async () => {
  failMinting = true;
  try {
    const c = chain({ CLEANROOM_GITHUB_TOKEN: "env-token" });
    await assert.rejects(c.authorizationFor(new URL(`https://${GH}/my-org/app.git`), "git"), (err) => err instanceof CredentialUnavailable && err.reasonCode === "upstream_error");
  } finally {
    failMinting = false;
  }
});

test("outside the prefixes, host tokens from the environment are used, as Basic for git and Bearer otherwise", async () => {
  const c = chain({ CLEANROOM_GITHUB_TOKEN: "gh-env", CORP_NPM_TOKEN: "npm-env" });
  assert.equal(await c.authorizationFor(new URL(`https://${GH}/someone-else/repo.git`), "git"), `Basic ${Buffer.from("x-access-token:gh-env").toString("base64")}`);
  assert.equal(await c.authorizationFor(new URL("https://npm.corp.test/pkg"), "http"), "Bearer npm-env");
  assert.deepEqual(c.configuredHosts().sort(), [GH, "npm.corp.test"].sort());
});

test("then git credential fill answers, with prompts off; and nothing is ever sent over plain http", async () => {
  const home = mkdtempSync(join(dir, "home-"));
  writeFileSync(join(home, ".gitconfig"), '[credential "https://helper.test"]\n\thelper = "!f() { echo username=bot; echo password=from-helper; }; f"\n');
  const c = credentialChain({ env: { HOME: home }, logger: silentLogger() });
  assert.equal(await c.authorizationFor(new URL("https://helper.test/repo.git"), "git"), `Basic ${Buffer.from("bot:from-helper").toString("base64")}`);
  assert.equal(await c.authorizationFor(new URL("https://nohelper.test/repo.git"), "git"), undefined);
  assert.equal(await credentialChain({ env: { CLEANROOM_GITLAB_TOKEN: "t" }, logger: silentLogger() }).authorizationFor(new URL("http://gitlab.com/x"), "git"), undefined);
});

test("doctor learns whether the App's key loads, never a secret", () => {
  assert.equal(chain().githubAppProblem(), undefined);
  const broken = credentialChain({ env: {}, githubApp: { appId: "1", installationId: "2", privateKeyFile: join(dir, "missing.pem"), repoPrefixes: ["x/"] }, logger: silentLogger() });
  assert.match(broken.githubAppProblem() ?? "", /missing\.pem/);
});
