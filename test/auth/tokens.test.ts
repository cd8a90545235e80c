import assert from "node:assert/strict";
import { test } from "node:test";
import { authSettingsSchema, createAuthorizer, type Authorizer } from "../../src/auth/index.ts";
import { suiteCleanup } from "../fixtures/cleanup.ts";
import { startTestIssuer } from "../fixtures/oidc-issuer.ts";

const suite = suiteCleanup();
const issuer = await startTestIssuer({ audience: "cleanroom" });
suite.after(() => issuer.close());

const settings = authSettingsSchema.parse({
  required: true,
  oidc: { issuers: [{ name: "test", issuer: issuer.issuer, audiences: ["cleanroom"], jwks_url: issuer.jwksUrl, required_claims: { team: "blue" } }] },
  policy: { bindings: [{ name: "everyone", principal: { id: "${token.subject}" }, grants: [{ name: "all", actions: ["*"] }] }] },
});

async function authorizer(): Promise<Authorizer> {
  return createAuthorizer({ issuers: settings.oidc!.issuers, policy: settings.policy! });
}

const blue = { claims: { team: "blue" } };

async function refusal(auth: Authorizer, header: string | undefined): Promise<string> {
  try {
    await auth.authenticate(header);
  } catch (err) {
    return (err as { code: string }).code;
  }
  return "accepted";
}

test("a token signed by a configured issuer, for our audience, with the required claims, names its subject", async () => {
  const auth = await authorizer();
  const caller = await auth.authenticate(`Bearer ${await issuer.sign({ subject: "user:alice", ...blue })}`);
  assert.equal(caller.principal.id, "user:alice");
  assert.equal(caller.token.issuerName, "test");
  assert.equal(caller.binding, "everyone");
});

test("each kind of bad token is refused with its own reason code", async () => {
  const auth = await authorizer();
  const cases: [string, string | undefined, string][] = [
    ["no header", undefined, "auth_missing"],
    ["not a bearer header", "Basic dXNlcjpwYXNz", "auth_invalid_token"],
    ["not a JWT", "Bearer not.a.jwt", "auth_invalid_token"],
    ["wrong audience", `Bearer ${await issuer.sign({ audience: "someone-else", ...blue })}`, "auth_audience_mismatch"],
    ["expired beyond the skew", `Bearer ${await issuer.sign({ issuedAt: -700, expiresIn: -120, ...blue })}`, "auth_invalid_token"],
    ["not yet valid beyond the skew", `Bearer ${await issuer.sign({ notBefore: 300, ...blue })}`, "auth_invalid_token"],
    ["unknown issuer", `Bearer ${await issuer.sign({ issuer: "https://elsewhere.test", ...blue })}`, "auth_untrusted_issuer"],
    ["tampered signature", `Bearer ${await issuer.sign({ forgedKey: true, ...blue })}`, "auth_invalid_token"],
    ["lives longer than the maximum", `Bearer ${await issuer.sign({ expiresIn: 7200, ...blue })}`, "auth_invalid_token"],
    ["lacks a required claim", `Bearer ${await issuer.sign({ claims: { team: "red" } })}`, "auth_invalid_token"],
  ];
  for (const [what, header, code] of cases) assert.equal(await refusal(auth, header), code, what);
});

test("a token altered after signing does not verify", async () => {
  const auth = await authorizer();
  const [head, body, signature] = (await issuer.sign({ subject: "user:alice", ...blue })).split(".");
  const claims = JSON.parse(Buffer.from(body!, "base64url").toString());
  const altered = Buffer.from(JSON.stringify({ ...claims, sub: "user:root" })).toString("base64url");
  assert.equal(await refusal(auth, `Bearer ${head}.${altered}.${signature}`), "auth_invalid_token");
});

test("an expiry within the clock skew is still accepted", async () => {
  const auth = await authorizer();
  assert.equal(await refusal(auth, `Bearer ${await issuer.sign({ issuedAt: -600, expiresIn: -30, ...blue })}`), "accepted");
});

test("tokens naming unknown key ids do not make the server refetch the JWKS for each one", async () => {
  const auth = await authorizer();
  await auth.authenticate(`Bearer ${await issuer.sign(blue)}`);
  const before = issuer.jwksFetches;
  for (let i = 0; i < 20; i++) assert.equal(await refusal(auth, `Bearer ${await issuer.sign({ kid: `rotated-${i}`, ...blue })}`), "auth_invalid_token");
  assert.ok(issuer.jwksFetches - before <= 1, `the JWKS was fetched ${issuer.jwksFetches - before} more times`);
});
