// A shared server: the daemon listens on https://0.0.0.0 with auth.required, tokens come from a real OIDC issuer on
// loopback (keys made here, JWKS served here). Every call needs a token that verifies and a grant that covers it;
// what a principal creates is its own, lists show only its own, and each way of being refused has its reason code.
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { before, test } from "node:test";
import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { ExecutionService, HostService, ImageService, SandboxService, SnapshotService } from "../../src/api/index.ts";
import { suiteCleanup } from "../fixtures/cleanup.ts";
import { ensureBaseImage, startTestDaemon, type TestDaemon } from "../fixtures/daemon.ts";
import { startTestIssuer, type TestIssuer } from "../fixtures/oidc-issuer.ts";
import { freePort } from "../fixtures/ports.ts";
import { httpsListener, testCertificates, type TestCertificates } from "../fixtures/tls.ts";

const suite = suiteCleanup();
let daemon: TestDaemon;
let issuer: TestIssuer;
let certs: TestCertificates;
let configPath: string;
const tokens: Record<"alice" | "bob" | "reader" | "robot", string> = { alice: "", bob: "", reader: "", robot: "" };

function authConfig(i: TestIssuer): string {
  return `auth:
  required: true
  oidc:
    issuers:
      - name: test
        issuer: ${i.issuer}
        audiences: [cleanroom]
        jwks_url: ${i.jwksUrl}
  policy:
    bindings:
      - name: people
        when: token.subject.startsWith("user:")
        principal: { id: "\${token.subject}" }
        grants:
          - name: own-sandboxes
            actions: ["sandbox.*", "execution.*", "snapshot.*"]
            condition: action != "sandbox.create" || request.policy.network_default == "deny"
      - name: readers
        when: token.subject.startsWith("reader:")
        principal: { id: "\${token.subject}" }
        grants:
          - name: list
            actions: [sandbox.list]
`;
}

before(async () => {
  // the base image is built over a local (trusted) socket: image administration is not open to remote callers
  const local = await startTestDaemon(suite);
  await ensureBaseImage(local);
  await local.stop();

  issuer = await startTestIssuer({ audience: "cleanroom" });
  suite.after(() => issuer.close());
  for (const [name, subject] of [["alice", "user:alice"], ["bob", "user:bob"], ["reader", "reader:carol"], ["robot", "robot:x"]] as const) {
    tokens[name] = await issuer.sign({ subject, expiresIn: 1800 });
  }
  certs = testCertificates(["127.0.0.1", "localhost"]);
  suite.after(() => certs.remove());
  const port = await freePort();
  daemon = await startTestDaemon(suite, {
    listen: httpsListener(certs, port, { bind: `https://0.0.0.0:${port}` }),
    config: authConfig(issuer),
    token: tokens.alice,
  });
  configPath = join(daemon.env.XDG_CONFIG_HOME!, "cleanroom", "config.yaml");
});

const as = (who: keyof typeof tokens | "nobody", token?: string) => ({ env: { CLEANROOM_AUTH_TOKEN: token ?? (who === "nobody" ? "" : tokens[who]) } });

async function sandboxOf(who: "alice" | "bob", args: string[] = []): Promise<string> {
  const created = await daemon.cli(["sandbox", "create", ...args], as(who));
  assert.equal(created.code, 0, created.stderr);
  const id = created.stdout.trim();
  suite.after(() => daemon.cli(["sandbox", "rm", id], as(who)));
  return id;
}

test("what a principal creates is its own: others cannot see, run in, read, snapshot, restore or terminate it", async () => {
  const id = await sandboxOf("alice");
  const ran = await daemon.cli(["exec", "--in", id, "--", "sh", "-c", "echo secret > /tmp/note; echo ran"], as("alice"));
  assert.equal(ran.stdout, "ran\n", ran.stderr);

  const mine = JSON.parse((await daemon.cli(["sandbox", "ls", "--json"], as("alice"))).stdout) as { sandbox_id: string; owner?: { principal_id: string } }[];
  assert.deepEqual(mine.map((s) => [s.sandbox_id, s.owner?.principal_id]), [[id, "user:alice"]]);
  const bobsList = await daemon.cli(["sandbox", "ls", "--json"], as("bob"));
  assert.deepEqual(JSON.parse(bobsList.stdout), [], "another principal's list is empty");
  const executions = JSON.parse((await daemon.cli(["execution", "ls", "--all", "--json"], as("alice"))).stdout) as { execution_id: string; owner?: { principal_id: string } }[];
  assert.ok(executions.length >= 1 && executions.every((e) => e.owner?.principal_id === "user:alice"), "executions inherit the sandbox's owner");
  assert.deepEqual(JSON.parse((await daemon.cli(["execution", "ls", "--all", "--json"], as("bob"))).stdout), []);

  const snapshot = await daemon.cli(["snapshot", "create", id, "--json"], as("alice"));
  assert.equal(snapshot.code, 0, snapshot.stderr);
  const snapshotId = (JSON.parse(snapshot.stdout) as { snapshot_id: string }).snapshot_id;
  suite.after(() => daemon.cli(["snapshot", "rm", snapshotId], as("alice")));
  assert.deepEqual(JSON.parse((await daemon.cli(["snapshot", "ls", "--json"], as("bob"))).stdout), []);

  for (const args of [
    ["sandbox", "inspect", id],
    ["exec", "--in", id, "--", "true"],
    ["cp", `${id}:/tmp/note`, "-"],
    ["execution", "inspect", executions[0]!.execution_id],
    ["snapshot", "create", id],
    ["snapshot", "inspect", snapshotId],
    ["sandbox", "create", "--from", snapshotId],
    ["sandbox", "suspend", id],
    ["sandbox", "rm", id],
  ]) {
    const refused = await daemon.cli(args, as("bob"));
    assert.equal(refused.code, args[0] === "exec" ? 125 : 1, `${args.join(" ")}: ${refused.stdout}`);
    assert.match(refused.stderr, /\[auth_owner_mismatch\]/, args.join(" "));
  }
  const still = await daemon.cli(["exec", "--in", id, "--", "cat", "/tmp/note"], as("alice"));
  assert.equal(still.stdout, "secret\n", "the owner's sandbox is untouched");
});

test("each way of being refused carries its reason code", async () => {
  const cases: [string, { env: NodeJS.ProcessEnv }, string[], string][] = [
    ["no token", as("nobody"), ["sandbox", "ls"], "auth_missing"],
    ["wrong audience", as("alice", await issuer.sign({ subject: "user:alice", audience: "another-service" })), ["sandbox", "ls"], "auth_audience_mismatch"],
    ["expired", as("alice", await issuer.sign({ subject: "user:alice", issuedAt: -1000, expiresIn: -300 })), ["sandbox", "ls"], "auth_invalid_token"],
    ["unknown issuer", as("alice", await issuer.sign({ subject: "user:alice", issuer: "https://issuer.invalid" })), ["sandbox", "ls"], "auth_untrusted_issuer"],
    ["tampered signature", as("alice", await issuer.sign({ subject: "user:alice", forgedKey: true })), ["sandbox", "ls"], "auth_invalid_token"],
    ["no binding", as("robot"), ["sandbox", "ls"], "auth_no_binding"],
    ["no grant", as("reader"), ["sandbox", "create"], "auth_no_grant"],
    ["a grant condition on the request", as("alice"), ["sandbox", "create", "--dangerously-allow-all"], "auth_no_grant"],
    ["host administration", as("alice"), ["image", "ls"], "auth_no_grant"],
  ];
  for (const [what, opts, args, code] of cases) {
    const result = await daemon.cli(args, opts);
    assert.equal(result.code, 1, `${what}: ${result.stdout}`);
    assert.match(result.stderr, new RegExp(`\\[${code}\\]`), `${what}: ${result.stderr}`);
  }
  assert.equal((await daemon.cli(["sandbox", "ls"], as("reader"))).code, 0, "a grant of sandbox.list alone lists");
  const health = await daemon.cli(["version", "--json"], as("alice"));
  assert.equal(health.code, 0, health.stderr);
});

test("every API method refuses a caller without a token before doing anything; /healthz stays open", async () => {
  const transport = createConnectTransport({ baseUrl: daemon.host, httpVersion: "2", nodeOptions: { ca: certs.caPem } });
  const services: DescService[] = [SandboxService, ExecutionService, SnapshotService, ImageService, HostService];
  let methods = 0;
  for (const service of services) {
    const client = createClient(service, transport) as unknown as Record<string, (input: unknown) => unknown>;
    for (const method of service.methods) {
      methods++;
      const input = method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming" ? (async function* () { yield {}; })() : {};
      const code = await (async () => {
        try {
          const result = client[method.localName]!(input);
          if (result && typeof result === "object" && Symbol.asyncIterator in result) for await (const _ of result as AsyncIterable<unknown>);
          else await result;
          return "allowed";
        } catch (err) {
          return ConnectError.from(err).code === Code.Unauthenticated ? "unauthenticated" : `${Code[ConnectError.from(err).code]}: ${ConnectError.from(err).message}`;
        }
      })();
      assert.equal(code, "unauthenticated", `${service.name}.${method.name}`);
    }
  }
  assert.ok(methods >= 40, `${methods} methods checked`);
  const health = await fetch(`${daemon.host}/healthz`, { dispatcher: await tlsDispatcher(certs.caPem) } as RequestInit);
  assert.equal(health.status, 200);
});

test("on the daemon's unix socket, callers are the host's own users: auth.required does not apply there", async () => {
  const local = await startTestDaemon(suite, { config: authConfig(issuer) });
  const listed = await local.cli(["sandbox", "ls", "--json"], as("nobody"));
  assert.equal(listed.code, 0, listed.stderr);
  const images = await local.cli(["image", "ls"], as("nobody"));
  assert.equal(images.code, 0, images.stderr);
});

test("auth check decides like the server, without one: exit 0 when allowed, 1 when denied", async () => {
  const tokenFile = join(daemon.stateDir, "..", "alice.jwt");
  writeFileSync(tokenFile, tokens.alice);
  const allowed = await daemon.cli(["auth", "check", "--config", configPath, "--token-file", tokenFile, "--action", "sandbox.get", "--resource-id", "abc", "--owner-principal-id", "user:alice", "--json"]);
  assert.equal(allowed.code, 0, allowed.stderr);
  assert.deepEqual(JSON.parse(allowed.stdout), {
    allowed: true,
    principal: { id: "user:alice", subject: "user:alice", issuer: issuer.issuer, scope: "" },
    action: "sandbox.get",
    resource: { kind: "sandbox", id: "abc", owner: { principal_id: "user:alice", scope: "" } },
    binding: "people",
    grant: "own-sandboxes",
    reason: "",
    message: "allowed by binding people, grant own-sandboxes",
  });
  const other = await daemon.cli(["auth", "check", "--config", configPath, "--token-file", "-", "--action", "sandbox.terminate", "--resource-id", "abc", "--owner-principal-id", "user:bob"], { input: tokens.alice });
  assert.equal(other.code, 1);
  assert.match(other.stdout, /^auth check denied: auth_owner_mismatch: sandbox abc belongs to principal user:bob/);
  const request = join(daemon.stateDir, "..", "allow-all-request.json");
  writeFileSync(request, JSON.stringify({ policy: { network_default: "allow" } }));
  const allowAll = await daemon.cli(["auth", "check", "--config", configPath, "--token-file", tokenFile, "--action", "sandbox.create", "--request", request]);
  assert.equal(allowAll.code, 1);
  assert.match(allowAll.stdout, /auth_no_grant/);
  const typo = await daemon.cli(["auth", "check", "--config", configPath, "--token-file", tokenFile, "--action", "sandbox.destroy"]);
  assert.equal(typo.code === 0, false);
  assert.match(typo.stderr, /--action: expected one of/);
});

async function tlsDispatcher(ca: string) {
  const { Agent } = await import("undici");
  return new Agent({ connect: { ca } });
}
