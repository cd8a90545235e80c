import { test } from "node:test";
import assert from "node:assert/strict";
import { parseListenAddress } from "../../src/server/index.ts";

test("--listen accepts unix sockets, loopback http and https", () => {
  assert.deepEqual(parseListenAddress("unix:///run/x.sock"), { kind: "unix", path: "/run/x.sock" });
  assert.deepEqual(parseListenAddress("/run/x.sock"), { kind: "unix", path: "/run/x.sock" });
  assert.deepEqual(parseListenAddress("http://127.0.0.1:7777"), { kind: "tcp", host: "127.0.0.1", port: 7777, tls: false });
  assert.deepEqual(parseListenAddress("http://[::1]:0"), { kind: "tcp", host: "::1", port: 0, tls: false });
  assert.deepEqual(parseListenAddress("https://0.0.0.0:7443"), { kind: "tcp", host: "0.0.0.0", port: 7443, tls: true });
});

test("--listen refuses plain http beyond loopback and unknown schemes", () => {
  assert.throws(() => parseListenAddress("http://0.0.0.0:7777"), { code: "auth_insecure_transport", message: /only served on loopback/ });
  assert.throws(() => parseListenAddress("ftp://127.0.0.1"), { code: "invalid_argument", message: /unsupported scheme/ });
  assert.throws(() => parseListenAddress("not a url"), { code: "invalid_argument" });
});
