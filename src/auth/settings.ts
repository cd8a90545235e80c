import { z } from "zod";
import { isActionPattern, RESOURCE_KINDS } from "./actions.ts";
import { expressionProblem, type ExpressionKind } from "./expressions.ts";
import { templateProblem } from "./templates.ts";

const name = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, "expected a name of letters, digits, '_', '.', '-' (at most 64)");

const expression = (kind: ExpressionKind) =>
  z.string().min(1).superRefine((source, ctx) => {
    const problem = expressionProblem(kind, source);
    if (problem) ctx.addIssue({ code: "custom", message: `CEL ${kind}: ${problem}` });
  });

const template = z.string().min(1).superRefine((text, ctx) => {
  const problem = templateProblem(text);
  if (problem) ctx.addIssue({ code: "custom", message: problem });
});

/** RS256 by default, as Cleanroom; asymmetric algorithms only (an HMAC key would be a shared secret in a JWKS). */
const algorithm = z.enum(["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"]);

// plain http is refused beyond loopback by the runtime config, which knows what loopback is
const jwksUrl = z.url({ protocol: /^https?$/ });

export const issuerSettingsSchema = z.strictObject({
  name,
  /** compared exactly with the token's `iss` */
  issuer: z.string().min(1).max(512),
  /** the token's `aud` must contain one of these */
  audiences: z.array(z.string().min(1).max(512)).min(1).max(32),
  jwks_url: jwksUrl,
  allowed_algorithms: z.array(algorithm).min(1).default(["RS256"]),
  clock_skew_seconds: z.number().int().min(0).max(600).default(60),
  /** exp minus iat (or minus now when the token has no iat) may not exceed this */
  max_token_lifetime_seconds: z.number().int().min(1).max(7 * 86400).default(3600),
  /** claims the token must carry with exactly these values (a list claim must contain the value) */
  required_claims: z.record(z.string().min(1).max(128), z.union([z.string().max(1024), z.number(), z.boolean()])).default({}),
});

const grantSchema = z.strictObject({
  name,
  actions: z.array(z.string().refine(isActionPattern, "not a Cleanroom action (e.g. sandbox.create, sandbox.file.read, execution.*, *)")).min(1).max(64),
  /** resource kinds the grant covers; all when absent */
  resources: z.array(z.enum(RESOURCE_KINDS)).min(1).optional(),
  condition: expression("condition").optional(),
});

const bindingSchema = z.strictObject({
  name,
  /** the binding applies to tokens for which this is true; to every token when absent */
  when: expression("when").optional(),
  principal: z.strictObject({ id: template, scope: template.optional() }),
  grants: z.array(grantSchema).max(128),
});

/** `auth.policy`, or the whole of an `auth.policy_file`. The first binding whose `when` holds decides. */
export const authPolicySchema = z.strictObject({
  bindings: z.array(bindingSchema).min(1).max(1024).superRefine(unique("binding")),
});

/** `auth:` in the runtime config. */
export const authSettingsSchema = z
  .strictObject({
    /** every TCP caller must present a valid bearer token; required for any listener beyond loopback */
    required: z.boolean().default(false),
    oidc: z.strictObject({ issuers: z.array(issuerSettingsSchema).min(1).max(32).superRefine(unique("issuer")) }).optional(),
    policy: authPolicySchema.optional(),
    /** a YAML file holding `bindings:`, relative to the config file */
    policy_file: z.string().min(1).optional(),
  })
  .superRefine((auth, ctx) => {
    if (auth.policy && auth.policy_file) ctx.addIssue({ code: "custom", path: ["policy_file"], message: "auth.policy and auth.policy_file are exclusive: keep one" });
    if (!auth.required) return;
    if (!auth.oidc) ctx.addIssue({ code: "custom", path: ["required"], message: "auth.required needs auth.oidc.issuers to verify tokens" });
    if (!auth.policy && !auth.policy_file) ctx.addIssue({ code: "custom", path: ["required"], message: "auth.required needs auth.policy or auth.policy_file to grant anything" });
  });

export type IssuerSettings = z.infer<typeof issuerSettingsSchema>;
export type AuthPolicySettings = z.infer<typeof authPolicySchema>;
export type AuthSettings = z.infer<typeof authSettingsSchema>;

function unique(what: string) {
  return (items: { name: string }[], ctx: z.RefinementCtx) => {
    const seen = new Set<string>();
    items.forEach((item, index) => {
      if (seen.has(item.name)) ctx.addIssue({ code: "custom", path: [index, "name"], message: `${what} name "${item.name}" is used twice` });
      seen.add(item.name);
    });
  };
}
