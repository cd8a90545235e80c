import { test } from "node:test";
import assert from "node:assert/strict";
import { parseListenAddress } from "../../src/server/index.ts";

test("--listen accepts unix sockets and loopback http", () => {
  assert.deepEqual(parseListenAddress("unix:///run/x.sock"), { kind: "unix", path: "/run/x.sock" });
  assert.deepEqual(parseListenAddress("/run/x.sock"), { kind: "unix", path: "/run/x.sock" });
  assert.deepEqual(parseListenAddress("http://127.0.0.1:7777"), { kind: "tcp", host: "127.0.0.1", port: 7777 });
  assert.deepEqual(parseListenAddress("http://[::1]:0"), { kind: "tcp", host: "::1", port: 0 });
});

test("--listen refuses plain http beyond loopback and unknown schemes", () => {
  assert.throws(() => parseListenAddress("http://0.0.0.0:7777"), { code: "invalid_argument", message: /only served on loopback/ });
  assert.throws(() => parseListenAddress("ftp://127.0.0.1"), { code: "invalid_argument", message: /unsupported scheme/ });
  assert.throws(() => parseListenAddress("not a url"), { code: "invalid_argument" });
});
