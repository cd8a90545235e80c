import { test, before } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { suiteCleanup } from "../fixtures/cleanup.ts";
import { startTestDaemon, ensureBaseImage, runCli, type TestDaemon } from "../fixtures/daemon.ts";

const suite = suiteCleanup();
let daemon: TestDaemon;
const configHome = mkdtempSync(join(tmpdir(), "cleanroom-config-"));
suite.after(() => rmSync(configHome, { recursive: true, force: true }));

before(async () => {
  mkdirSync(join(configHome, "cleanroom"));
  writeFileSync(join(configHome, "cleanroom", "config.yaml"), "backends:\n  linux:\n    vcpus: 1\n    memory_mib: 768\n    pids_limit: 300\nsandbox_lifecycle:\n  warm_pool_size: 0\n");
  daemon = await startTestDaemon(suite, { env: { XDG_CONFIG_HOME: configHome } });
  await ensureBaseImage(daemon);
});

test("new sandboxes get the resource defaults of the runtime config", async () => {
  const created = JSON.parse((await daemon.cli(["create", "--json"])).stdout);
  assert.deepEqual(created.resources, { vcpus: 1, memory_mib: 768, pids_limit: 300 });
  const memoryLimit = [`/sys/fs/cgroup/memory/cleanroom/${created.sandbox_id}/memory.limit_in_bytes`, `/sys/fs/cgroup/cleanroom/${created.sandbox_id}/memory.max`]
    .filter((path) => existsSync(path)).map((path) => Number(readFileSync(path, "utf8")));
  assert.deepEqual(memoryLimit, [768 * 1024 * 1024]);
  await daemon.cli(["sandbox", "rm", created.sandbox_id]);
});

test("config validate names the file, and a broken config fails with its position", async () => {
  const ok = await daemon.cli(["config", "validate"]);
  assert.equal(ok.stdout, `${join(configHome, "cleanroom", "config.yaml")}: valid\n`);
  const brokenHome = join(configHome, "broken");
  mkdirSync(join(brokenHome, "cleanroom"), { recursive: true });
  writeFileSync(join(brokenHome, "cleanroom", "config.yaml"), "backends:\n  linux:\n    vcpu: 1\n");
  const broken = await runCli(["config", "validate"], { ...daemon.env, XDG_CONFIG_HOME: brokenHome });
  assert.equal(broken.code, 1);
  assert.match(broken.stderr, /config\.yaml:3:5: backends\.linux\.vcpu: unknown key "vcpu" \[invalid_argument\]/);
});

test("control_host in the config is where the CLI finds the daemon", async () => {
  const home = join(configHome, "client");
  mkdirSync(join(home, "cleanroom"), { recursive: true });
  writeFileSync(join(home, "cleanroom", "config.yaml"), `control_host: ${daemon.host}\n`);
  const env: NodeJS.ProcessEnv = { ...daemon.env, XDG_CONFIG_HOME: home };
  delete env.CLEANROOM_HOST;
  const version = await runCli(["version", "--json"], env);
  assert.equal(JSON.parse(version.stdout).agent_protocol, "1");
});

test("config init writes a starter config that validates, and refuses to overwrite", async () => {
  const path = join(configHome, "init", "config.yaml");
  assert.equal((await daemon.cli(["config", "init", "--path", path])).code, 0);
  assert.equal((await daemon.cli(["config", "validate", "--path", path])).stdout, `${path}: valid\n`);
  const again = await daemon.cli(["config", "init", "--path", path]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /already exists; pass --force/);
});
