import { test, before } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { canonicalJson, loadRepositoryPolicy } from "../../src/policy/index.ts";
import { suiteCleanup } from "../fixtures/cleanup.ts";
import { startTestDaemon, ensureBaseImage, runCli, type TestDaemon } from "../fixtures/daemon.ts";

const suite = suiteCleanup();
let daemon: TestDaemon;
let baseImage: string;

before(async () => {
  daemon = await startTestDaemon(suite);
  await ensureBaseImage(daemon);
  const images = JSON.parse((await daemon.cli(["image", "ls", "--json"])).stdout) as { ref: string; digest: string }[];
  const base = images.find((i) => i.ref === "cleanroom.local/base:bookworm")!;
  baseImage = `cleanroom.local/base@${base.digest}`;
});

function repository(policy: string): string {
  const dir = mkdtempSync(join(tmpdir(), "cleanroom-repo-"));
  suite.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, "cleanroom.yaml"), policy);
  return dir;
}

const inRepo = (dir: string, args: string[]) => runCli(args, { ...daemon.env, PWD: dir }, undefined, 120_000, dir);

test("policy validate prints the source and the hash the sandbox then carries", async () => {
  const dir = repository(`version: 1\nsandbox:\n  image:\n    ref: ${baseImage}\n  resources:\n    memory: 3GiB\n`);
  const validated = await inRepo(dir, ["policy", "validate"]);
  assert.equal(validated.code, 0, validated.stderr);
  const [source, hash] = validated.stdout.trim().split("\n");
  assert.equal(source, join(dir, "cleanroom.yaml"));
  assert.match(hash ?? "", /^sha256:[0-9a-f]{64}$/);
  const created = JSON.parse((await inRepo(dir, ["create", "--json"])).stdout);
  assert.equal(created.policy_hash, hash);
  assert.equal(created.resources.memory_mib, 3072, "policy resources are floors above the default");
  assert.equal((await daemon.cli(["exec", "--in", created.sandbox_id, "--", "echo", "ok"])).stdout, "ok\n");
  await daemon.cli(["sandbox", "rm", created.sandbox_id]);
});

test("exec -c reads another directory's policy; a broken policy stops exec with its position", async () => {
  const broken = repository(`version: 1\nsandbox:\n  image:\n    ref: ${baseImage}\n  network:\n    allow:\n      - "*.example.com:443"\n`);
  const result = await daemon.cli(["exec", "-c", broken, "--", "true"]);
  assert.equal(result.code, 125);
  assert.equal(result.stderr, `cleanroom: ${join(broken, "cleanroom.yaml")}:7:9: sandbox.network.allow[0]: "*.example.com:443" — wildcards are not supported; list each host [policy_invalid]\n`);
  const validate = await daemon.cli(["policy", "validate", "-c", broken, "--json"]);
  assert.equal(validate.code, 1);
  assert.equal(JSON.parse(validate.stdout).error.reason_code, "policy_invalid");
});

test("a policy the backend cannot enforce fails closed with backend_capability_mismatch", async () => {
  const dir = repository(`version: 1\nsandbox:\n  image:\n    ref: ${baseImage}\n  resources:\n    disk: 16GiB\n`);
  const result = await inRepo(dir, ["exec", "--", "true"]);
  assert.equal(result.code, 125);
  assert.match(result.stderr, /cannot enforce what this policy needs: sandbox\.resources\.disk.*\[backend_capability_mismatch\]/);
  const live = JSON.parse((await daemon.cli(["sandbox", "ls", "--json"])).stdout) as unknown[];
  assert.deepEqual(live, []);
});

test("the daemon refuses a compiled policy that does not match its hash", async () => {
  const dir = repository(`version: 1\nsandbox:\n  image:\n    ref: ${baseImage}\n`);
  const { policy, hash } = (await loadRepositoryPolicy(dir))!;
  const widened = canonicalJson({ ...policy, resources: { vcpus: 64 } });
  await assert.rejects(daemon.client.createSandbox({ policy: { json: widened, hash } }), { code: "policy_invalid", message: /hash mismatch/ });
});
