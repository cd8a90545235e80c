import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { resolveClientFlags } from "../../src/cli/client.ts";
import { parseEndpoint } from "../../src/sdk/connect-json.ts";

test("a bearer token goes over unix sockets, loopback http and https, never plain http beyond loopback", () => {
  const token = "eyJ.token.sig";
  assert.equal(parseEndpoint("unix:///run/x.sock", { token }).token, token);
  assert.equal(parseEndpoint("http://127.0.0.1:7777", { token }).token, token);
  assert.equal(parseEndpoint("http://localhost:7777", { token }).token, token);
  assert.equal(parseEndpoint("http://[::1]:7777", { token }).token, token);
  assert.equal(parseEndpoint("https://cleanroom.example:7443", { token }).token, token);
  for (const host of ["http://10.0.0.5:7777", "http://cleanroom.example:7777", "http://127.0.0.1.nip.example:80"]) {
    assert.throws(() => parseEndpoint(host, { token }), { code: "auth_insecure_transport" }, host);
  }
  assert.equal(parseEndpoint("http://10.0.0.5:7777").token, undefined, "without a token there is nothing to protect");
});

test("the token comes from --auth-token-file, else the variable --auth-token-env names; both must hold one", async () => {
  const dir = mkdtempSync(join(tmpdir(), "cleanroom-token-"));
  try {
    writeFileSync(join(dir, "token"), "  file-token\n");
    writeFileSync(join(dir, "empty"), "\n");
    const host = "unix:///run/x.sock";
    assert.equal((await resolveClientFlags({ host, authTokenFile: join(dir, "token") })).token, "file-token");
    await assert.rejects(resolveClientFlags({ host, authTokenFile: join(dir, "empty") }), { code: "auth_missing", message: /is empty/ });
    await assert.rejects(resolveClientFlags({ host, authTokenFile: join(dir, "missing") }), { code: "auth_missing" });
    process.env.CLEANROOM_TEST_TOKEN = "env-token";
    assert.equal((await resolveClientFlags({ host, authTokenEnv: "CLEANROOM_TEST_TOKEN" })).token, "env-token");
    delete process.env.CLEANROOM_TEST_TOKEN;
    await assert.rejects(resolveClientFlags({ host, authTokenEnv: "CLEANROOM_TEST_TOKEN" }), { code: "auth_missing", message: /not set/ });
    assert.equal((await resolveClientFlags({ host, authTokenEnv: "CLEANROOM_AUTH_TOKEN" })).token, undefined, "the default variable may be unset");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
