import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadRuntimeConfig } from "../../src/config/index.ts";
import { configFile } from "../fixtures/config-file.ts";


test("a valid config is read, and a missing one is empty", async (t) => {
  const path = configFile(t, "default_backend: linux\nbackends:\n  linux:\n    vcpus: 1\n    memory_mib: 512\n");
  assert.deepEqual(await loadRuntimeConfig(path), { default_backend: "linux", backends: { linux: { vcpus: 1, memory_mib: 512 } } });
  assert.deepEqual(await loadRuntimeConfig(join(tmpdir(), "no-such-dir", "config.yaml")), {});
});

test("gateway settings are read, with file paths relative to the config file", async (t) => {
  const path = configFile(t, [
    "gateway:",
    "  oci:",
    "    registries: { registry.corp.test: 'https://mirror.corp.test:5000' }",
    "  upstream: { allow_private_cidrs: [10.20.0.0/16], ca_file: corp-ca.pem }",
    "  credentials:",
    "    env: { npm.corp.test: CORP_NPM_TOKEN }",
    "    github_app: { app_id: 123, installation_id: '456', private_key_file: keys/app.pem, repo_prefixes: [my-org/] }",
  ].join("\n"));
  const config = await loadRuntimeConfig(path);
  const dir = join(path, "..");
  assert.equal(config.gateway?.upstream?.ca_file, join(dir, "corp-ca.pem"));
  assert.deepEqual(config.gateway?.credentials?.github_app, { app_id: "123", installation_id: "456", private_key_file: join(dir, "keys", "app.pem"), repo_prefixes: ["my-org/"] });
  assert.equal(config.gateway?.oci?.registries?.["registry.corp.test"], "https://mirror.corp.test:5000");
});

/** An auth section with one issuer and one binding; each option breaks one thing. */
function authYaml(o: { when?: string; grantActions?: string; principal?: string; jwks?: string; extra?: string } = {}): string {
  return [
    "auth:",
    "  required: true",
    "  oidc:",
    "    issuers:",
    "      - { name: ci, issuer: 'https://token.ci.test',",
    `          audiences: [cleanroom], jwks_url: '${o.jwks ?? "https://token.ci.test/jwks"}' }`,
    "  policy:",
    "    bindings:",
    `      - when: ${JSON.stringify(o.when ?? "has(claims.repository)")}`,
    `        principal: { id: ${o.principal ?? "'repo:${claims.repository}'"} }`,
    "        name: ci",
    "        grants:",
    `          - actions: ${o.grantActions ?? "[sandbox.create]"}`,
    "            name: create",
  ].join("\n") + "\n" + (o.extra ?? "");
}

test("an auth policy file is read into auth.policy, relative to the config file", async (t) => {
  const path = configFile(t, "auth:\n  required: true\n  oidc:\n    issuers: [{ name: a, issuer: 'https://i.test', audiences: [c], jwks_url: 'http://127.0.0.1:9/jwks' }]\n  policy_file: bindings.yaml\n");
  writeFileSync(join(path, "..", "bindings.yaml"), "bindings:\n  - name: everyone\n    principal: { id: '${token.subject}' }\n    grants: [{ name: all, actions: ['*'] }]\n");
  const config = await loadRuntimeConfig(path);
  assert.equal(config.auth?.policy_file, join(path, "..", "bindings.yaml"));
  assert.equal(config.auth?.policy?.bindings[0]?.name, "everyone");
  assert.equal(config.auth?.oidc?.issuers[0]?.clock_skew_seconds, 60, "defaults as Cleanroom's");
  writeFileSync(join(path, "..", "bindings.yaml"), "bindings:\n  - name: everyone\n    principal: { id: '${token.subject}' }\n    grants: [{ name: all, actions: ['*'], condition: 'request.vcpus <' }]\n");
  await assert.rejects(loadRuntimeConfig(path), /bindings\.yaml:4:\d+: bindings\[0\]\.grants\[0\]\.condition: CEL condition/);
});

const broken: [name: string, text: string, message: RegExp][] = [
  ["an unknown gateway key", "gateway:\n  npm:\n    registy: npm.test\n", /config\.yaml:3:5: gateway\.npm\.registy: unknown key "registy"/],
  ["a gateway credential that is not an env var name", "gateway:\n  credentials:\n    env:\n      npm.test: 'my secret'\n", /config\.yaml:4:17: gateway\.credentials\.env\.npm\.test: expected an environment variable name/],
  ["an unknown top-level key", "default_backend: linux\nauth_required: true\n", /config\.yaml:2:1: auth_required: unknown key "auth_required"/],
  ["an unknown nested key", "backends:\n  linux:\n    cpus: 2\n", /config\.yaml:3:5: backends\.linux\.cpus: unknown key "cpus"/],
  ["a string where a number belongs", "backends:\n  linux:\n    vcpus: two\n", /config\.yaml:3:12: backends\.linux\.vcpus: .*number/],
  ["an unknown backend", "default_backend: docker\n", /config\.yaml:1:18: default_backend: .*"linux"/],
  ["a non-integer memory size", "backends:\n  linux:\n    memory_mib: 1.5\n", /config\.yaml:3:17: backends\.linux\.memory_mib:/],
  ["a control_host without a scheme", "control_host: localhost:7777\n", /config\.yaml:1:15: control_host: expected unix:\/\/\/path/],
  ["a YAML syntax error", "backends:\n  linux: [1, 2\n", /config\.yaml:\d+:\d+: /],
  ["a duplicate key", "default_backend: linux\ndefault_backend: qemu\n", /config\.yaml:2:1: .*[Uu]nique/],
  ["a CEL typo in a binding's when", authYaml({ when: "claim.repo == 'x'" }), /config\.yaml:9:15: auth\.policy\.bindings\[0\]\.when: CEL when: Unknown variable: claim/],
  ["a grant naming an action that does not exist", authYaml({ grantActions: "[sandbox.destroy]" }), /config\.yaml:13:23: auth\.policy\.bindings\[0\]\.grants\[0\]\.actions\[0\]: not a Cleanroom action/],
  ["a principal template with an unknown placeholder", authYaml({ principal: "'${env.USER}'" }), /config\.yaml:10:26: auth\.policy\.bindings\[0\]\.principal\.id: unknown placeholder/],
  ["a JWKS over plain http beyond loopback", authYaml({ jwks: "http://issuer.test/jwks.json" }), /config\.yaml:6:45: auth\.oidc\.issuers\[0\]\.jwks_url: jwks_url must be https/],
  ["auth.required without a policy", "auth:\n  required: true\n  oidc:\n    issuers: [{ name: a, issuer: 'https://i.test', audiences: [c], jwks_url: 'https://i.test/jwks' }]\n", /config\.yaml:2:13: auth\.required: auth\.required needs auth\.policy/],
  ["both auth.policy and auth.policy_file", authYaml({ extra: "  policy_file: bindings.yaml\n" }), /auth\.policy_file: auth\.policy and auth\.policy_file are exclusive/],
];

for (const [name, text, message] of broken) {
  test(`config with ${name} is refused with its position`, async (t) => {
    const path = configFile(t, text);
    await assert.rejects(loadRuntimeConfig(path), (err: Error & { code?: string }) => {
      assert.equal(err.code, "invalid_argument");
      assert.match(err.message, message);
      return true;
    });
  });
}
