import assert from "node:assert/strict";
import { test } from "node:test";
import { GatewayRefusal } from "../../src/gateway/refusal.ts";
import { isGatewayHostHeader, parseGatewayPath, parseUpstreamHost } from "../../src/gateway/request-path.ts";

const refused = (fn: () => unknown) => assert.throws(fn, (err) => err instanceof GatewayRefusal && err.reasonCode === "invalid_request");

test("paths are split into decoded segments with the query kept raw", () => {
  assert.deepEqual(parseGatewayPath("/npm/registry.npmjs.org/@types%2fnode?write=true"), {
    segments: ["npm", "registry.npmjs.org", "@types/node"],
    trailingSlash: false,
    query: "write=true",
  });
  assert.equal(parseGatewayPath("/git/host/repo/").trailingSlash, true);
});

test("dot segments, encoded separators that climb, empty segments, backslashes and control bytes are refused", () => {
  for (const target of ["/a/../b", "/a/./b", "/a/%2e%2e/b", "/a/%2E%2e", "/a/x%2f..%2fy", "/a//b", "/a/b%5c..", "/a/%00", "/a/%0d%0aX", "a/b", "/a/%zz", `/${"x/".repeat(70)}`]) {
    refused(() => parseGatewayPath(target));
  }
});

test("upstream hosts are lowercased names or IPv4 with an optional port, nothing else", () => {
  assert.deepEqual(parseUpstreamHost("GitHub.com"), { host: "github.com", port: 443, authority: "github.com" });
  assert.deepEqual(parseUpstreamHost("registry.test:5000"), { host: "registry.test", port: 5000, authority: "registry.test:5000" });
  for (const bad of ["user@host", "host:0", "host:65536", "host:08", "[::1]", "-bad.test", "a..b", "1234", "", "host:"]) refused(() => parseUpstreamHost(bad));
});

test("the Host header must name the gateway or the address the guest reached", () => {
  assert.ok(isGatewayHostHeader("gateway.cleanroom.internal:8170", "gateway.cleanroom.internal", "10.213.0.1", 8170));
  assert.ok(isGatewayHostHeader("10.213.0.1:8170", "gateway.cleanroom.internal", "10.213.0.1", 8170));
  assert.ok(!isGatewayHostHeader("github.com", "gateway.cleanroom.internal", "10.213.0.1", 8170));
  assert.ok(!isGatewayHostHeader("gateway.cleanroom.internal:9999", "gateway.cleanroom.internal", "10.213.0.1", 8170));
  assert.ok(!isGatewayHostHeader(undefined, "gateway.cleanroom.internal", "10.213.0.1", 8170));
});
