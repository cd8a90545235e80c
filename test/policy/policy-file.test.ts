import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { canonicalJson, loadPolicyFile, loadRepositoryPolicy, verifyCompiledPolicy } from "../../src/policy/index.ts";
import { DIGEST, IMAGE, MALFORMED } from "./cases.ts";

function repo(t: { after(fn: () => void): void }, files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), "policy-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(join(dir, name, ".."), { recursive: true });
    writeFileSync(join(dir, name), text);
  }
  return dir;
}

const VALID = `version: 1
repository:
  network:
    allow: [github.com:443]
sandbox:
  image:
    ref: ${IMAGE}
  network:
    default: deny
    allow:
      - API.Example.com:443
      - host: api.example.com
        ports: [8443, 443]
      - 10.250.0.2:8080
  resources:
    vcpus: 4
    memory: 8GiB
  dependencies:
    - name: node
      command: npm ci
      inputs:
        files: [package.json, package-lock.json]
      outputs:
        dirs: [node_modules]
  run:
    before: echo ready
`;

test("a valid policy compiles to explicit stages with merged, sorted, lowercased rules", async (t) => {
  const dir = repo(t, { "cleanroom.yaml": VALID });
  const loaded = (await loadRepositoryPolicy(dir))!;
  assert.equal(loaded.source, join(dir, "cleanroom.yaml"));
  const { policy } = loaded;
  assert.deepEqual(policy.image, { ref: IMAGE, digest: DIGEST });
  const expected = [{ host: "10.250.0.2", ports: [8080] }, { host: "api.example.com", ports: [443, 8443] }];
  assert.deepEqual(policy.network.stages.execution, expected);
  assert.deepEqual(policy.network.stages.dependencies, expected);
  assert.deepEqual(policy.network.stages.repository, [{ host: "github.com", ports: [443] }]);
  assert.deepEqual(policy.resources, { vcpus: 4, memoryBytes: 8 * 1024 ** 3 });
  assert.deepEqual(policy.dependencies.blocks[0]?.command, ["/bin/sh", "-lc", "npm ci"]);
  assert.equal(policy.run.before, "echo ready");
  assert.match(loaded.hash, /^sha256:[0-9a-f]{64}$/);
});

test("stage blocks do not inherit: an omitted stage gets no egress", async (t) => {
  const dir = repo(t, {
    "cleanroom.yaml": `version: 1\nsandbox:\n  image:\n    ref: ${IMAGE}\n  network:\n    dependencies:\n      allow: [registry.npmjs.org:443]\n`,
  });
  const { policy } = (await loadRepositoryPolicy(dir))!;
  assert.deepEqual(policy.network.stages, { repository: [], dependencies: [{ host: "registry.npmjs.org", ports: [443] }], services: [], execution: [] });
});

test("the hash depends on meaning, not on spelling or order", async (t) => {
  const a = repo(t, { "cleanroom.yaml": `version: 1\nsandbox:\n  image:\n    ref: ${IMAGE}\n  network:\n    allow: [b.test:443, A.test:80]\n` });
  const b = repo(t, { "cleanroom.yaml": `version: 1\nsandbox:\n  network:\n    allow:\n      - host: a.test\n        ports: [80]\n      - b.test:443\n  image: {ref: "${IMAGE}"}\n` });
  const c = repo(t, { "cleanroom.yaml": `version: 1\nsandbox:\n  image:\n    ref: ${IMAGE}\n  network:\n    allow: [b.test:443, a.test:81]\n` });
  const [ha, hb, hc] = await Promise.all([a, b, c].map(async (d) => (await loadRepositoryPolicy(d))!.hash));
  assert.equal(ha, hb);
  assert.notEqual(ha, hc);
});

test(".buildkite/cleanroom.yaml is the fallback, and the root file wins with a warning", async (t) => {
  const fallback = repo(t, { ".buildkite/cleanroom.yaml": VALID });
  assert.equal((await loadRepositoryPolicy(fallback))!.source, join(fallback, ".buildkite", "cleanroom.yaml"));
  const both = repo(t, { "cleanroom.yaml": VALID, ".buildkite/cleanroom.yaml": "version: 2\n" });
  const loaded = (await loadRepositoryPolicy(both))!;
  assert.equal(loaded.source, join(both, "cleanroom.yaml"));
  assert.match(loaded.warnings[0] ?? "", /the root file wins/);
  assert.equal(await loadRepositoryPolicy(repo(t, {})), undefined);
});

test("the daemon accepts exactly what the client compiled, and nothing altered", async (t) => {
  const { policy, hash } = (await loadRepositoryPolicy(repo(t, { "cleanroom.yaml": VALID })))!;
  const json = canonicalJson(policy);
  assert.deepEqual(await verifyCompiledPolicy(json, hash), policy);
  await assert.rejects(verifyCompiledPolicy(json, `sha256:${"0".repeat(64)}`), { code: "policy_invalid", message: /hash mismatch/ });
  const widened = canonicalJson({ ...policy, network: { ...policy.network, default: "allow" } });
  await assert.rejects(verifyCompiledPolicy(widened, hash), { code: "policy_invalid", message: /network\.default/ });
  const wildcard = canonicalJson({ ...policy, network: { ...policy.network, stages: { ...policy.network.stages, execution: [{ host: "*.test", ports: [443] }] } } });
  await assert.rejects(verifyCompiledPolicy(wildcard, hash), { code: "policy_invalid" });
  await assert.rejects(verifyCompiledPolicy(JSON.stringify(policy, null, 2), hash), { code: "policy_invalid", message: /canonical/ });
  await assert.rejects(verifyCompiledPolicy("{", hash), { code: "policy_invalid", message: /not JSON/ });
});

for (const [name, yaml, message] of MALFORMED) {
  test(`cleanroom.yaml with ${name} is refused: ${message.slice(0, 60)}`, async (t) => {
    const dir = repo(t, { "cleanroom.yaml": yaml });
    await assert.rejects(loadPolicyFile(join(dir, "cleanroom.yaml")), (err: Error & { code?: string }) => {
      assert.equal(err.code, "policy_invalid");
      assert.equal(err.message.replace(`${dir}/`, ""), message);
      return true;
    });
  });
}
