import { test } from "node:test";
import assert from "node:assert/strict";
import { resolveEnv, parsePositiveInt } from "../../src/cli/commands/exec.ts";

test("-e KEY=VAL passes through and -e KEY copies the local value", () => {
  process.env.CLEANROOM_TEST_COPIED = "from here";
  delete process.env.CLEANROOM_TEST_UNSET;
  assert.deepEqual(resolveEnv(["A=1", "B=", "CLEANROOM_TEST_COPIED", "CLEANROOM_TEST_UNSET", "C=x=y"]), ["A=1", "B=", "CLEANROOM_TEST_COPIED=from here", "C=x=y"]);
});

test("-e with an invalid name is refused with the flag in the message", () => {
  assert.throws(() => resolveEnv(["1BAD=x"]), { code: "invalid_argument", message: /-e 1BAD=x/ });
  assert.throws(() => resolveEnv(["=x"]), { code: "invalid_argument" });
});

test("--launch-seconds must be a positive whole number", () => {
  assert.equal(parsePositiveInt("30", "--launch-seconds"), 30);
  assert.throws(() => parsePositiveInt("0", "--launch-seconds"), { code: "invalid_argument" });
  assert.throws(() => parsePositiveInt("1.5", "--launch-seconds"), { code: "invalid_argument" });
});
