import { test } from "node:test";
import assert from "node:assert/strict";
import { isCleanroomError } from "../../src/errors/index.ts";
import { parseCidr } from "../../src/network/ipv4.ts";
import { compileNetworkSpec } from "../../src/network/network-spec.ts";
import { renderResolvConf } from "../../src/network/resolv-conf.ts";

const blocked = ["127.0.0.0/8", "169.254.0.0/16", "10.213.0.0/16"].map(parseCidr);
const id = "abc123def456";

test("allow without stages is the always-active stage 'default'; names and IP literals are split", () => {
  const c = compileNetworkSpec({ sandboxId: id, allow: [{ host: "api.test", ports: [443, 80, 443] }, { host: "10.250.0.2", ports: [8080] }, { host: "api.test", ports: [8443] }] }, blocked);
  assert.deepEqual(c.stages, ["default"]);
  assert.equal(c.initialStage, "default");
  assert.deepEqual([...c.names.entries()].map(([n, m]) => [n, [...m.entries()]]), [["api.test", [["default", [80, 443, 8443]]]]]);
  assert.deepEqual(c.literals, [{ stage: "default", address: "10.250.0.2", port: 8080 }]);
  assert.equal(c.allowAll, false);
});

test("stages do not inherit; the initial stage defaults to none; allow-all is a flag", () => {
  const c = compileNetworkSpec({ sandboxId: id, stages: { repository: [{ host: "github.com", ports: [443] }], execution: [] }, allowAll: true }, blocked);
  assert.deepEqual(c.stages, ["repository", "execution"]);
  assert.equal(c.initialStage, null);
  assert.deepEqual([...c.names.keys()], ["github.com"]);
  assert.equal(c.allowAll, true);
  assert.equal(compileNetworkSpec({ sandboxId: id }, blocked).stages.length, 0, "no allowlist: nothing");
});

test("bad specs are refused with the entry that is wrong", () => {
  const cases: [unknown, RegExp][] = [
    [{ sandboxId: "short" }, /not 12 characters/],
    [{ sandboxId: id, allow: [], stages: {} }, /either allow .* or stages/],
    [{ sandboxId: id, stages: { "Bad-Stage": [] } }, /stage name "Bad-Stage"/],
    [{ sandboxId: id, allow: [{ host: "api.test", ports: [] }] }, /entry 0: ports must be a non-empty list/],
    [{ sandboxId: id, allow: [{ host: "api.test", ports: [0] }] }, /port 0 is not in 1..65535/],
    [{ sandboxId: id, allow: [{ host: "api.test", ports: [80.5] }] }, /port 80.5/],
    [{ sandboxId: id, allow: [{ host: "API.test", ports: [80] }] }, /not a lowercased DNS name/],
    [{ sandboxId: id, allow: [{ host: "*.test", ports: [80] }] }, /not a lowercased DNS name/],
    [{ sandboxId: id, allow: [{ host: "a..test", ports: [80] }] }, /not a lowercased DNS name/],
    [{ sandboxId: id, allow: [{ host: "::1", ports: [80] }] }, /not a lowercased DNS name or IPv4/],
    [{ sandboxId: id, allow: [{ host: "10.0.0.0/8", ports: [80] }] }, /not a lowercased DNS name/],
    [{ sandboxId: id, initialStage: "Nope" }, /initial stage/],
  ];
  for (const [spec, message] of cases) {
    assert.throws(() => compileNetworkSpec(spec as never, blocked), (err) => isCleanroomError(err, "invalid_argument") && message.test(err.message), String(message));
  }
  assert.throws(
    () => compileNetworkSpec({ sandboxId: id, allow: [{ host: "169.254.169.254", ports: [80] }] }, blocked),
    (err) => isCleanroomError(err, "policy_invalid") && /never reachable/.test(err.message),
  );
});

test("resolv.conf names only the sandbox's DNS policy server", () => {
  assert.equal(renderResolvConf("10.213.0.1"), "# written by cleanroom: names resolve only through the sandbox's DNS policy server\nnameserver 10.213.0.1\noptions ndots:1 timeout:2 attempts:2\n");
  assert.throws(() => renderResolvConf("10.213.0.1\nnameserver 8.8.8.8"), /not an IPv4/);
});
