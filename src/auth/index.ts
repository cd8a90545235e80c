/**
 * OIDC authentication and Cleanroom's authorization model for shared servers:
 *
 *   const authorizer = await createAuthorizer({ issuers: config.auth.oidc.issuers, policy: config.auth.policy });
 *   const caller = await authorizer.authenticate(request.headers.authorization);   // auth_missing, auth_invalid_token, …
 *   authorizer.require(caller, "sandbox.get", { kind: "sandbox", id, owner });      // auth_no_grant, auth_owner_mismatch
 *
 * A bearer JWT is verified against its issuer's JWKS (cached; an unknown kid refetches at most every 30 s), audience,
 * exp/nbf with skew, max lifetime and required claims. The first binding whose CEL `when` holds turns it into a principal
 * (`principal.id`/`scope` templates over `${token.*}` and `${claims.*}`); that binding's grants (actions, resource kinds,
 * CEL `condition` over action, principal, resource and request) decide, and an existing resource must be owned by the
 * same principal and scope.
 */
export { AUTH_ACTIONS, RESOURCE_KINDS, isAuthAction, resourceKindOf, type AuthAction, type ResourceKind } from "./actions.ts";
import type { Authorizer } from "./authorizer.ts";
import type { AuthPolicySettings, IssuerSettings } from "./settings.ts";
import type { TokenVerifierOptions } from "./tokens.ts";

export type { Authorizer };

/** Loads the verifier (jose) only when a daemon or `auth check` needs it: config parsing stays light. */
export async function createAuthorizer(settings: { issuers: readonly IssuerSettings[]; policy: AuthPolicySettings }, opts?: TokenVerifierOptions): Promise<Authorizer> {
  const { Authorizer: AuthorizerClass } = await import("./authorizer.ts");
  return new AuthorizerClass(settings, opts);
}
export { ownedBy, type AuthDecision, type Caller, type Principal, type ResourceOwner, type ResourceRef } from "./policy.ts";
export { authPolicySchema, authSettingsSchema, type AuthPolicySettings, type AuthSettings, type IssuerSettings } from "./settings.ts";
export type { VerifiedToken } from "./tokens.ts";
