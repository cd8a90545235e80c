import assert from "node:assert/strict";
import { test } from "node:test";
import { guestEnvironment } from "../../src/gateway/index.ts";

const gw = "http://gateway.cleanroom.internal:8170";
const envOf = (rules: { host: string; ports: number[] }[], settings = {}) =>
  Object.fromEntries(guestEnvironment(gw, { rules, allowAll: false }, settings).map((e) => [e.slice(0, e.indexOf("=")), e.slice(e.indexOf("=") + 1)]));

test("git is pointed at the gateway for every allowed https host, and only those", () => {
  const env = envOf([{ host: "github.com", ports: [443] }, { host: "git.internal", ports: [8443] }]);
  assert.equal(env.GIT_CONFIG_COUNT, "2");
  assert.equal(env.GIT_CONFIG_KEY_0, `url.${gw}/git/github.com/.insteadOf`);
  assert.equal(env.GIT_CONFIG_VALUE_0, "https://github.com/");
  assert.equal(env.GIT_CONFIG_KEY_1, `url.${gw}/git/git.internal:8443/.insteadOf`);
  assert.equal(env.GIT_CONFIG_VALUE_1, "https://git.internal:8443/");
  assert.equal(env.CLEANROOM_GATEWAY_URL, gw);
});

test("package managers are pointed at the gateway only when their upstream is allowed", () => {
  assert.deepEqual(Object.keys(envOf([{ host: "example.com", ports: [443] }])).filter((k) => !k.startsWith("GIT_") && k !== "CLEANROOM_GATEWAY_URL"), []);
  const env = envOf([
    { host: "registry.npmjs.org", ports: [443] },
    { host: "proxy.golang.org", ports: [443] },
    { host: "sum.golang.org", ports: [443] },
    { host: "rubygems.org", ports: [443] },
  ]);
  assert.equal(env.npm_config_registry, `${gw}/npm/registry.npmjs.org/`);
  assert.equal(env.GOPROXY, `${gw}/goproxy/`);
  assert.equal(env.GOSUMDB, `sum.golang.org ${gw}/goproxy/sumdb/sum.golang.org`);
  assert.equal(env["BUNDLE_MIRROR__HTTPS://RUBYGEMS__ORG/"], `${gw}/rubygems/`);
});

test("a configured npm registry host replaces registry.npmjs.org", () => {
  const env = envOf([{ host: "npm.corp.test", ports: [443] }], { npmRegistry: "npm.corp.test" });
  assert.equal(env.npm_config_registry, `${gw}/npm/npm.corp.test/`);
});

test("a port-80 allowance is not an https upstream for Go, and allow-all rewrites nothing", () => {
  assert.equal(envOf([{ host: "proxy.golang.org", ports: [80] }]).GOPROXY, undefined);
  assert.deepEqual(guestEnvironment(gw, { rules: [{ host: "github.com", ports: [443] }], allowAll: true }), []);
});
