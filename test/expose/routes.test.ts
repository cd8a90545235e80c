import assert from "node:assert/strict";
import { test } from "node:test";
import { checkRoutes, matchRoute, parseHttpsExposure, parsePortMapping, routesFromPolicy } from "../../src/expose/index.ts";
import { spellBareExposeHttps, matchFastExec } from "../../src/cli/exec-options.ts";

const SANDBOX = "k3v9qz0a7b2c";

test("--expose-https names one label or a wildcard over a dotted suffix; without a name the sandbox id is the route", () => {
  assert.deepEqual(parseHttpsExposure("web:3000", SANDBOX), { host: "web.cleanroom.localhost", port: 3000 });
  assert.deepEqual(parseHttpsExposure("*.web:3000", SANDBOX), { host: "*.web.cleanroom.localhost", port: 3000 });
  assert.deepEqual(parseHttpsExposure("*.a.b:80", SANDBOX), { host: "*.a.b.cleanroom.localhost", port: 80 });
  assert.deepEqual(parseHttpsExposure("3000", SANDBOX), { host: `${SANDBOX}.cleanroom.localhost`, port: 3000 });
  for (const bad of ["api.web:3000", "Web:3000", "web:0", "web:70000", "-web:3000", "*web:3000", "a.*.web:3000", "web", `${"a".repeat(64)}:80`, "web.:3000", "*.web.:3000"]) {
    assert.throws(() => parseHttpsExposure(bad, SANDBOX), { code: "invalid_argument" }, bad);
  }
});

test("policy routes fill in {base} and {sandbox_id}; without routes a bare --expose-https is refused", () => {
  const routes = routesFromPolicy({ base: "{sandbox_id}.cleanroom.localhost", routes: [{ port: 3000, hosts: ["{base}", "*.{base}", "*.*.{base}"] }, { port: 9000, hosts: ["admin.{base}"] }] }, SANDBOX);
  assert.deepEqual(routes, [
    { port: 3000, host: `${SANDBOX}.cleanroom.localhost` },
    { port: 3000, host: `*.${SANDBOX}.cleanroom.localhost` },
    { port: 3000, host: `*.*.${SANDBOX}.cleanroom.localhost` },
    { port: 9000, host: `admin.${SANDBOX}.cleanroom.localhost` },
  ]);
  assert.deepEqual(routesFromPolicy({ routes: [{ port: 8080, hosts: [] }] }, SANDBOX), [{ port: 8080, host: `${SANDBOX}.cleanroom.localhost` }]);
  assert.throws(() => routesFromPolicy(undefined, SANDBOX), { code: "invalid_argument", message: /needs expose\.https routes/ });
  // the daemon validates policies, but a client never serves a name outside cleanroom.localhost whatever it is told
  assert.throws(() => routesFromPolicy({ base: "bank.example", routes: [{ port: 443, hosts: ["{base}"] }] }, SANDBOX), { code: "policy_invalid" });
});

test("an exact route wins over wildcards; * matches exactly one label, never the base or deeper names", () => {
  const routes = checkRoutes([
    { host: "app.cleanroom.localhost", port: 1 },
    { host: "*.app.cleanroom.localhost", port: 2 },
    { host: "api.app.cleanroom.localhost", port: 3 },
    { host: "*.*.app.cleanroom.localhost", port: 4 },
  ]);
  const portFor = (host: string) => matchRoute(routes, host)?.port;
  assert.equal(portFor("app.cleanroom.localhost:8143"), 1);
  assert.equal(portFor("APP.cleanroom.localhost."), 1);
  assert.equal(portFor("api.app.cleanroom.localhost"), 3);
  assert.equal(portFor("www.app.cleanroom.localhost:8143"), 2);
  assert.equal(portFor("a.b.app.cleanroom.localhost"), 4);
  assert.equal(portFor("a.b.c.app.cleanroom.localhost"), undefined);
  assert.equal(portFor("other.cleanroom.localhost"), undefined);
  assert.equal(portFor("evilapp.cleanroom.localhost"), undefined);
  assert.throws(() => checkRoutes([{ host: "web.cleanroom.localhost", port: 1 }, { host: "web.cleanroom.localhost", port: 2 }]), { code: "invalid_argument", message: /both port 1 and port 2/ });
  assert.deepEqual(checkRoutes([{ host: "web.cleanroom.localhost", port: 1 }, { host: "web.cleanroom.localhost", port: 1 }]), [{ host: "web.cleanroom.localhost", port: 1 }]);
});

test("a bare --expose-https is told from one with a value, and nothing after -- is touched", () => {
  assert.deepEqual(spellBareExposeHttps(["--in", "x", "--expose-https", "--", "npm", "--expose-https"]), ["--in", "x", "--expose-https=", "--", "npm", "--expose-https"]);
  assert.deepEqual(spellBareExposeHttps(["--expose-https", "web:3000", "--expose-https"]), ["--expose-https", "web:3000", "--expose-https="]);
  const fast = matchFastExec(["exec", "--expose-https", "--expose-https", "3000", "--expose", "8080:80", "npm", "run", "dev"])!;
  assert.deepEqual(fast.flags.exposeHttps, ["", "3000"]);
  assert.deepEqual(fast.flags.expose, ["8080:80"]);
  assert.deepEqual(fast.command, ["npm", "run", "dev"]);
  // a bare flag followed straight by the command: the command is not eaten as its value
  assert.deepEqual(matchFastExec(["exec", "--expose-https", "npm", "start"])!.command, ["npm", "start"]);
  assert.deepEqual(parsePortMapping("8080:3000"), { hostPort: 8080, guestPort: 3000 });
});
