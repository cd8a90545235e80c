import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { quoteUnitWord, renderServiceUnit, type ServiceUnitSpec } from "../../src/service/systemd-unit.ts";

const exec = { expandsVariables: true };
const environment = { expandsVariables: false };

test("a unit value with a newline or another control character is refused, never written", () => {
  for (const hostile of ["unix:///run/x.sock\nExecStartPre=/bin/sh", "a\rb", "tab\there", "nul\0", "esc\u001b[0m", "del\u007f", "c1\u0085"]) {
    assert.throws(() => quoteUnitWord(hostile, exec), { code: "invalid_argument", message: /newline or another control character/ }, JSON.stringify(hostile));
  }
  const spec: ServiceUnitSpec = { execPath: "/usr/bin/node", args: ["serve", "--listen=unix:///x\n[Service]"], environment: {} };
  assert.throws(() => renderServiceUnit(spec), { code: "invalid_argument" });
  assert.throws(() => renderServiceUnit({ ...spec, args: ["serve"], environment: { A: "1\nExecStart=/bin/sh" } }), { code: "invalid_argument" });
});

test("quoting escapes backslash and double quote, doubles % always and $ only where systemd expands variables", () => {
  assert.equal(quoteUnitWord("plain", exec), `"plain"`);
  assert.equal(quoteUnitWord("with space", exec), `"with space"`);
  assert.equal(quoteUnitWord(`say "hi"`, exec), `"say \\"hi\\""`);
  assert.equal(quoteUnitWord("C:\\dir\\", exec), `"C:\\\\dir\\\\"`);
  assert.equal(quoteUnitWord("100%n", exec), `"100%%n"`);
  assert.equal(quoteUnitWord("$HOME ${PATH}", exec), '"$$HOME $${PATH}"');
  assert.equal(quoteUnitWord("$HOME 100%", environment), `"$HOME 100%%"`);
  assert.equal(quoteUnitWord("", exec), `""`);
  assert.equal(quoteUnitWord("ünïcode ;", exec), `"ünïcode ;"`);
});

test("environment names must be variable names and the program an absolute path", () => {
  assert.throws(() => renderServiceUnit({ execPath: "/usr/bin/node", args: [], environment: { "A B": "1" } }), { code: "invalid_argument", message: /not an environment variable name/ });
  assert.throws(() => renderServiceUnit({ execPath: "node", args: [], environment: {} }), { code: "invalid_argument", message: /absolute path/ });
});

test("the unit runs node on the CLI's serve with each argument quoted, restarts on failure and is wanted at boot", () => {
  const unit = renderServiceUnit({
    execPath: "/opt/node/bin/node",
    args: ["/opt/cleanroom/dist/cli/main.js", "serve", "--listen=unix:///run/cleanroom/cleanroom.sock"],
    environment: { NODE_COMPILE_CACHE: "/opt/cleanroom/dist/.compile-cache", CLEANROOM_STATE_DIR: "/srv/clean room" },
  });
  const lines = unit.split("\n");
  assert.ok(lines.includes(`ExecStart="/opt/node/bin/node" "/opt/cleanroom/dist/cli/main.js" "serve" "--listen=unix:///run/cleanroom/cleanroom.sock"`), unit);
  assert.ok(lines.includes(`Environment="CLEANROOM_STATE_DIR=/srv/clean room"`), unit);
  assert.ok(lines.includes(`Environment="NODE_COMPILE_CACHE=/opt/cleanroom/dist/.compile-cache"`), unit);
  for (const setting of ["Type=simple", "Restart=on-failure", "RestartSec=2s", "KillMode=mixed", "LimitNOFILE=1048576", "WantedBy=multi-user.target"]) {
    assert.ok(lines.includes(setting), `${setting} missing:\n${unit}`);
  }
  assert.deepEqual(lines.filter((l) => l.startsWith("[")), ["[Unit]", "[Service]", "[Install]"]);
});

test("systemd-analyze verify accepts the unit, and systemd reads back every argument and variable unchanged", (t) => {
  const dir = mkdtempSync(join(tmpdir(), "cleanroom-unit-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const args = ["--disable-warning=ExperimentalWarning", "a b", `q"uote`, "back\\slash", "tail\\", "50%", "$HOME", "${PATH}", "'single'", ";", "-x", "ünï"];
  const variables = { CLEANROOM_STATE_DIR: `/srv/a "b" 10% $HOME \\n`, NODE_COMPILE_CACHE: "/tmp/cache" };
  // verify insists that the program exists and is executable: this very node
  const path = join(dir, "cleanroom.service");
  writeFileSync(path, renderServiceUnit({ execPath: process.execPath, args, environment: variables }));

  const verify = spawnSync("systemd-analyze", ["verify", path], { encoding: "utf8", timeout: 60_000 });
  assert.equal(verify.error, undefined, "systemd-analyze is missing: scripts/setup.sh installs it (apt package systemd)");
  assert.equal(verify.status, 0, verify.stderr);
  assert.equal(verify.stderr.trim(), "", "no warnings either");

  // at debug level verify dumps the unit as systemd parsed it
  const dump = spawnSync("systemd-analyze", ["verify", path], { encoding: "utf8", env: { ...process.env, SYSTEMD_LOG_LEVEL: "debug" }, timeout: 60_000 });
  const debug = dump.stdout + dump.stderr;
  const environmentSeen = [...debug.matchAll(/^\s*Environment: (.*)$/gm)].map((m) => m[1]);
  assert.deepEqual(environmentSeen.sort(), Object.entries(variables).map(([k, v]) => `${k}=${v}`).sort());
  const commandLine = /^\s*Command Line: (.*)$/m.exec(debug)?.[1];
  assert.ok(commandLine, `no Command Line in systemd's dump:\n${debug.slice(-2000)}`);
  // systemd prints each word bare or double-quoted with \ escapes; "$$" is what it turns into "$" when it runs the command
  const words = [...commandLine.matchAll(/"((?:[^"\\]|\\.)*)"|(\S+)/g)].map((m) => (m[1] !== undefined ? m[1].replace(/\\(.)/g, "$1") : m[2]!).replace(/\$\$/g, "$"));
  assert.deepEqual(words, [process.execPath, ...args]);
});
