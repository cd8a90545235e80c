import assert from "node:assert/strict";
import { test } from "node:test";
import { authSettingsSchema, createAuthorizer } from "../../src/auth/index.ts";
import { suiteCleanup } from "../fixtures/cleanup.ts";
import { startTestIssuer } from "../fixtures/oidc-issuer.ts";

const suite = suiteCleanup();
const issuer = await startTestIssuer({ audience: "cleanroom" });
suite.after(() => issuer.close());

// CI jobs are bound by repository (scope: pipeline); people by subject. CI may only create small, deny-default
// sandboxes of its own repository; people may do anything to their own sandboxes but never snapshot.delete.
const settings = authSettingsSchema.parse({
  required: true,
  oidc: { issuers: [{ name: "test", issuer: issuer.issuer, audiences: ["cleanroom"], jwks_url: issuer.jwksUrl }] },
  policy: {
    bindings: [
      {
        name: "ci",
        when: 'has(claims.repository) && claims.repository.startsWith("acme/")',
        principal: { id: "repo:${claims.repository}", scope: "${claims.pipeline}" },
        grants: [
          {
            name: "small-sandboxes",
            actions: ["sandbox.create"],
            condition: 'request.policy.resources.vcpus <= 2 && request.policy.network_default == "deny" && request.repository.url == "https://git.test/" + principal.id.substring(5)',
          },
          { name: "run", actions: ["sandbox.get", "execution.*", "sandbox.file.read"] },
        ],
      },
      {
        name: "people",
        when: 'token.subject.startsWith("user:")',
        principal: { id: "${token.subject}" },
        grants: [{ name: "own-everything", actions: ["sandbox.*", "execution.*", "snapshot.create", "snapshot.get", "snapshot.list", "snapshot.restore"] }],
      },
    ],
  },
});
const auth = await createAuthorizer({ issuers: settings.oidc!.issuers, policy: settings.policy! });
const ciToken = await issuer.sign({ subject: "repo:acme/app:ref:main", claims: { repository: "acme/app", pipeline: "deploy" } });
const aliceToken = await issuer.sign({ subject: "user:alice" });

const createRequest = (vcpus: number, url = "https://git.test/acme/app") => ({
  backend: "linux",
  repository: { url, commit: "", branch: "" },
  policy: { resources: { vcpus, memory_bytes: 0, disk_bytes: 0 }, network_default: "deny", network: { hosts: [], ports: [] }, docker: { required: false } },
});

test("the first binding whose `when` holds names the principal from the token's claims", async () => {
  const ci = await auth.evaluate(ciToken, "sandbox.get", { kind: "sandbox", id: "s1", owner: { principalId: "repo:acme/app", scope: "deploy" } });
  assert.equal(ci.allowed, true, ci.message);
  assert.deepEqual([ci.binding, ci.grant, ci.principal?.id, ci.principal?.scope], ["ci", "run", "repo:acme/app", "deploy"]);
  const alice = await auth.evaluate(aliceToken, "sandbox.get", { kind: "sandbox", id: "s2", owner: { principalId: "user:alice", scope: "" } });
  assert.deepEqual([alice.allowed, alice.binding, alice.principal?.id], [true, "people", "user:alice"]);
});

test("a token no binding applies to is denied with auth_no_binding", async () => {
  const stranger = await issuer.sign({ subject: "robot:x" });
  const decision = await auth.evaluate(stranger, "sandbox.list", { kind: "sandbox" });
  assert.deepEqual([decision.allowed, decision.reasonCode], [false, "auth_no_binding"]);
});

test("a grant's condition sees the request: CI may create small sandboxes of its own repository only", async () => {
  const create = (request: Record<string, unknown>) => auth.evaluate(ciToken, "sandbox.create", { kind: "sandbox" }, request);
  assert.equal((await create(createRequest(2))).allowed, true);
  assert.deepEqual([(await create(createRequest(8))).allowed, (await create(createRequest(8))).reasonCode], [false, "auth_no_grant"]);
  assert.equal((await create(createRequest(1, "https://git.test/other/repo"))).reasonCode, "auth_no_grant");
  assert.equal((await create({})).reasonCode, "auth_no_grant", "a condition over fields the request lacks is false, not an error");
});

test("an action no grant names is denied with auth_no_grant", async () => {
  const decision = await auth.evaluate(aliceToken, "snapshot.delete", { kind: "snapshot", id: "snap1", owner: { principalId: "user:alice", scope: "" } });
  assert.deepEqual([decision.allowed, decision.reasonCode], [false, "auth_no_grant"]);
  assert.match(decision.message, /user:alice.*snapshot\.delete/);
});

test("another principal's resource, or one with no owner, is denied with auth_owner_mismatch", async () => {
  const bobs = await auth.evaluate(aliceToken, "sandbox.terminate", { kind: "sandbox", id: "s3", owner: { principalId: "user:bob", scope: "" } });
  assert.deepEqual([bobs.allowed, bobs.reasonCode], [false, "auth_owner_mismatch"]);
  const otherScope = await auth.evaluate(ciToken, "execution.get", { kind: "execution", id: "e1", owner: { principalId: "repo:acme/app", scope: "release" } });
  assert.equal(otherScope.reasonCode, "auth_owner_mismatch");
  const local = await auth.evaluate(aliceToken, "sandbox.get", { kind: "sandbox", id: "s4" });
  assert.equal(local.reasonCode, "auth_owner_mismatch");
  assert.match(local.message, /local caller/);
});

test("wildcards: sandbox.* covers file and port actions; creation and listing have no owner to match", async () => {
  for (const action of ["sandbox.file.write", "sandbox.port.dial", "sandbox.create", "sandbox.list"] as const) {
    const id = action === "sandbox.create" || action === "sandbox.list" ? {} : { id: "s5", owner: { principalId: "user:alice", scope: "" } };
    const decision = await auth.evaluate(aliceToken, action, { kind: "sandbox", ...id });
    assert.equal(decision.allowed, true, `${action}: ${decision.message}`);
  }
});

test("a policy with a CEL typo, an unknown action or a bad template is refused when it loads", () => {
  const bad = (binding: Record<string, unknown>) => authSettingsSchema.safeParse({ policy: { bindings: [{ name: "b", principal: { id: "x" }, grants: [], ...binding }] } });
  const message = (binding: Record<string, unknown>) => {
    const result = bad(binding);
    assert.equal(result.success, false);
    return result.error!.issues[0]!.message;
  };
  assert.match(message({ when: "claim.repository == 'x'" }), /CEL when: Unknown variable: claim/);
  assert.match(message({ when: "claims.x ==" }), /CEL when/);
  assert.match(message({ when: '"a string"' }), /not bool/);
  assert.match(message({ grants: [{ name: "g", actions: ["sandbox.delete"] }] }), /not a Cleanroom action/);
  assert.match(message({ grants: [{ name: "g", actions: ["sandbox.get"], condition: "token.subject == 'x'" }] }), /Unknown variable: token/);
  assert.match(message({ principal: { id: "${claims.repo}${env.HOME}" } }), /unknown placeholder \$\{env\.HOME\}/);
  assert.equal(authSettingsSchema.safeParse({ required: true }).success, false, "required without issuers or policy");
});
