import { test } from "node:test";
import assert from "node:assert/strict";
import { matchFastExec, UsageError } from "../../src/cli/exec-options.ts";

test("exec options end at -- or at the first word, so the command keeps its own flags", () => {
  const parsed = matchFastExec(["exec", "--keep", "-e", "A=1", "--env", "B", "--", "ls", "-la"])!;
  assert.deepEqual(parsed.command, ["ls", "-la"]);
  assert.equal(parsed.flags.keep, true);
  assert.deepEqual(parsed.flags.env, ["A=1", "B"]);
  const bare = matchFastExec(["exec", "--in", "abc", "echo", "-n", "hi"])!;
  assert.deepEqual(bare.command, ["echo", "-n", "hi"]);
  assert.equal(bare.flags.in, "abc");
  assert.equal(bare.flags.stdin, true);
});

test("client options before the command, aliases and negations are understood", () => {
  const parsed = matchFastExec(["--host", "unix:///x.sock", "--tls-ca=/ca.pem", "--auth-token-file", "/t", "exec", "--sandbox-id", "abc", "-n", "--print-sandbox-id", "--", "true"])!;
  assert.deepEqual(parsed.globals, { host: "unix:///x.sock", tlsCa: "/ca.pem", authTokenFile: "/t" });
  assert.equal(parsed.flags.in, "abc");
  assert.equal(parsed.flags.stdin, false);
  assert.equal(parsed.flags.printSandboxId, true);
  assert.equal(matchFastExec(["--host=unix:///y", "console"])!.globals.host, "unix:///y");
});

test("help and other commands go to the full program", () => {
  assert.equal(matchFastExec(["exec", "--help"]), undefined);
  assert.equal(matchFastExec(["sandbox", "ls"]), undefined);
  assert.equal(matchFastExec([]), undefined);
});

test("an unknown option or a missing value is a usage error", () => {
  assert.throws(() => matchFastExec(["exec", "--bogus", "--", "true"]), UsageError);
  assert.throws(() => matchFastExec(["exec", "--image"]), UsageError);
  assert.throws(() => matchFastExec(["console", "--tty"]), /Unknown option '--tty'/);
});
