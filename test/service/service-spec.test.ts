import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { defineService } from "../../src/service/service-spec.ts";

const launcher = ["/opt/node/bin/node", "--disable-warning=ExperimentalWarning", "/opt/cleanroom/dist/cli/main.js"];
const env = { CLEANROOM_STATE_DIR: "/srv/cleanroom" };

test("install flags become single --flag=value words, so a value can never become another flag", async () => {
  const service = await defineService({ listen: "unix:///srv/cleanroom.sock", gatewayListen: ":0", logLevel: "debug" }, env, launcher);
  assert.deepEqual(service.serveArgs, ["serve", "--listen=unix:///srv/cleanroom.sock", "--gateway-listen=:0", "--log-level=debug"]);
  assert.equal(service.listen, "unix:///srv/cleanroom.sock");
  assert.deepEqual(service.launcher, launcher);
});

test("without --listen the service serves, and status reports, the default socket", async () => {
  const service = await defineService({}, env, launcher);
  assert.deepEqual(service.serveArgs, ["serve"]);
  assert.match(service.listen, /^unix:\/\/\/.+cleanroom\.sock$/);
});

test("bad install flags are refused with invalid_argument", async () => {
  const refused = async (flags: Parameters<typeof defineService>[0], message: RegExp) =>
    assert.rejects(defineService(flags, env, launcher), { code: "invalid_argument", message });
  await refused({ listen: "unix:///x.sock\nExecStartPre=/bin/sh -c evil" }, /--listen: .* control character/);
  await refused({ listen: "ftp://127.0.0.1:1" }, /unsupported scheme/);
  await refused({ gatewayListen: "everywhere" }, /--gateway-listen everywhere: expected :PORT/);
  await refused({ logLevel: "loud" }, /--log-level loud/);
  await refused({ listen: "https://127.0.0.1:7443", tlsCert: "/x.pem" }, /go together/);
  await refused({ listen: "unix:///x.sock", tlsCert: "/x.pem", tlsKey: "/y.pem" }, /need an https:\/\/ --listen/);
  await refused({ listen: "https://127.0.0.1:7443" }, /needs --tls-cert and --tls-key/);
  await assert.rejects(defineService({ listen: "http://0.0.0.0:7777" }, env, launcher), { code: "auth_insecure_transport" });
});

test("TLS files become absolute paths and must exist", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "cleanroom-tls-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, "cert.pem"), "cert");
  writeFileSync(join(dir, "key.pem"), "key");
  const previous = process.cwd();
  process.chdir(dir);
  t.after(() => process.chdir(previous));
  const service = await defineService({ listen: "https://127.0.0.1:7443", tlsCert: "cert.pem", tlsKey: "key.pem" }, env, launcher);
  assert.deepEqual(service.serveArgs.slice(2), [`--tls-cert=${join(dir, "cert.pem")}`, `--tls-key=${join(dir, "key.pem")}`]);
  await assert.rejects(defineService({ listen: "https://127.0.0.1:7443", tlsCert: "missing.pem", tlsKey: "key.pem" }, env, launcher), { code: "not_found" });
});

test("the installing shell's daemon settings go into the service, its credentials do not", async () => {
  const service = await defineService({}, {
    CLEANROOM_STATE_DIR: "/srv/cleanroom",
    CLEANROOM_NETWORK_POOL: "10.99.0.0/24",
    CLEANROOM_WARM_POOL: "0",
    XDG_CONFIG_HOME: "/etc/cleanroom-config",
    CLEANROOM_GITHUB_TOKEN: "ghp_secret",
    CLEANROOM_AUTH_TOKEN: "secret",
    HOME: "/root",
  }, launcher);
  const { NODE_COMPILE_CACHE, ...carried } = service.environment;
  assert.match(NODE_COMPILE_CACHE ?? "", /dist\/\.compile-cache$/);
  assert.deepEqual(carried, {
    CLEANROOM_STATE_DIR: "/srv/cleanroom",
    CLEANROOM_NETWORK_POOL: "10.99.0.0/24",
    CLEANROOM_WARM_POOL: "0",
    XDG_CONFIG_HOME: "/etc/cleanroom-config",
  });
});
