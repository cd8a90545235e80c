import assert from "node:assert/strict";
import { createPrivateKey, randomUUID, sign, X509Certificate } from "node:crypto";
import { readFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { test, type TestContext } from "node:test";
import { isCleanroomError } from "../../src/errors/index.ts";
import { ImageStore } from "../../src/image/index.ts";
import { startRegistry } from "../fixtures/registry.ts";
import { run, skopeoPush, TEST_ID_RANGE, tempDir } from "./helpers/env.ts";
import { tarOf, writeOciLayout } from "./helpers/oci-layout.ts";

const USER = "alice";
const PASSWORD = "correct horse";
const SERVICE = "cleanroom-test-registry";
const ISSUER = "cleanroom-test-issuer";

const b64url = (b: Buffer | string) => Buffer.from(b).toString("base64url");

/** A token server in the distribution token protocol: Basic credentials in, RS256 JWT (x5c-signed) out. */
async function startTokenServer(t: TestContext, dir: string): Promise<{ realm: string; certFile: string; issued: () => number }> {
  const certFile = join(dir, "token.crt");
  const keyFile = join(dir, "token.key");
  await run("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", keyFile, "-out", certFile, "-days", "1", "-subj", "/CN=cleanroom-test-token"]);
  const key = createPrivateKey(await readFile(keyFile));
  const der = new X509Certificate(await readFile(certFile)).raw.toString("base64");
  let issued = 0;
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://token");
    const ok = req.headers.authorization === `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString("base64")}`;
    if (!ok) {
      res.writeHead(401, { "content-type": "application/json" });
      return void res.end(JSON.stringify({ details: "bad credentials" }));
    }
    const access = url.searchParams.getAll("scope").map((s) => {
      const [type, ...rest] = s.split(":");
      const actions = rest.pop()!.split(",");
      return { type, name: rest.join(":"), actions };
    });
    const now = Math.floor(Date.now() / 1000);
    const header = b64url(JSON.stringify({ typ: "JWT", alg: "RS256", x5c: [der] }));
    const claims = b64url(JSON.stringify({ iss: ISSUER, sub: USER, aud: url.searchParams.get("service"), exp: now + 300, nbf: now - 10, iat: now, jti: randomUUID(), access }));
    const signature = b64url(sign("sha256", Buffer.from(`${header}.${claims}`), key));
    issued++;
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ token: `${header}.${claims}.${signature}`, expires_in: 300 }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.after(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }));
  return { realm: `http://127.0.0.1:${(server.address() as AddressInfo).port}/token`, certFile, issued: () => issued };
}

test("token auth against docker-registry: credentials → bearer token; anonymous pulls are refused", async (t) => {
  const dir = await tempDir(t);
  const tokens = await startTokenServer(t, dir);
  const registry = await startRegistry(t, { tokenAuth: { realm: tokens.realm, service: SERVICE, issuer: ISSUER, rootCertBundle: tokens.certFile } });
  const layout = await tempDir(t);
  const built = await writeOciLayout(layout, "v1", { layers: [tarOf([{ path: "secret", data: "only for alice" }])] });
  await skopeoPush(layout, "v1", `${registry.host}/private/app:v1`, { creds: `${USER}:${PASSWORD}` });

  const root = await tempDir(t);
  const anonymous = new ImageStore({ root, idRange: TEST_ID_RANGE });
  await assert.rejects(anonymous.pull(`${registry.host}/private/app:v1`), (e) => isCleanroomError(e, "registry_error"));

  const wrong = new ImageStore({ root, idRange: TEST_ID_RANGE, registry: { credentials: async () => ({ username: USER, password: "nope" }) } });
  await assert.rejects(wrong.pull(`${registry.host}/private/app:v1`), (e) => isCleanroomError(e, "registry_error") && /refused/.test(e.message));

  const before = tokens.issued();
  const store = new ImageStore({
    root,
    idRange: TEST_ID_RANGE,
    registry: { credentials: async (host) => (host === registry.host ? { username: USER, password: PASSWORD } : undefined) },
  });
  const image = await store.pull(`${registry.host}/private/app:v1`);
  assert.equal(image.digest, built.manifestDigest);
  assert.equal(tokens.issued() - before, 1, "one token serves the manifest, config and layer requests");
  const [dirPath] = await store.layerDirs(image);
  assert.equal(await readFile(join(dirPath!, "secret"), "utf8"), "only for alice");
});
