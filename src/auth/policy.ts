import { CleanroomError, type ReasonCode } from "../errors/index.ts";
import { actionMatches, type AuthAction, type ResourceKind } from "./actions.ts";
import { compileExpression, type CompiledExpression } from "./expressions.ts";
import type { AuthPolicySettings } from "./settings.ts";
import { renderTemplate } from "./templates.ts";
import type { VerifiedToken } from "./tokens.ts";

/** Who a token speaks for: the principal its binding made of it. Resources are owned by a principal id and scope. */
export interface Principal {
  id: string;
  scope: string;
  subject: string;
  issuer: string;
}

export interface ResourceOwner {
  principalId: string;
  scope: string;
}

/**
 * What an action is about. `id` is absent for creating a sandbox and for listing; an execution or snapshot about to be
 * made carries its sandbox's id and owner (it inherits them). `owner` is absent for a resource a local caller made.
 */
export interface ResourceRef {
  kind: ResourceKind;
  id?: string;
  owner?: ResourceOwner;
}

/** An authenticated caller: the token, its principal, and the grants of the binding that matched. */
export interface Caller {
  token: VerifiedToken;
  principal: Principal;
  binding: string;
}

export interface AuthDecision {
  allowed: boolean;
  action: AuthAction;
  resource: ResourceRef;
  principal?: Principal;
  binding?: string;
  grant?: string;
  /** the reason code of a denial */
  reasonCode?: ReasonCode;
  message: string;
}

interface CompiledGrant {
  name: string;
  actions: string[];
  resources?: ResourceKind[];
  condition?: CompiledExpression;
}

interface CompiledBinding {
  name: string;
  when?: CompiledExpression;
  principal: { id: string; scope?: string };
  grants: CompiledGrant[];
}

/** The bindings and grants of `auth.policy`: first matching binding names the principal; its grants decide. */
export class AuthPolicy {
  readonly #bindings: CompiledBinding[];

  constructor(settings: AuthPolicySettings) {
    this.#bindings = settings.bindings.map((b) => ({
      name: b.name,
      ...(b.when ? { when: compileExpression("when", b.when) } : {}),
      principal: b.principal,
      grants: b.grants.map((g) => ({
        name: g.name,
        actions: g.actions,
        ...(g.resources ? { resources: g.resources } : {}),
        ...(g.condition ? { condition: compileExpression("condition", g.condition) } : {}),
      })),
    }));
  }

  /** The caller a verified token is: throws auth_no_binding when no binding applies or its principal cannot be made. */
  bind(token: VerifiedToken): Caller {
    const values = { token: { issuer: token.issuer, subject: token.subject }, claims: token.claims };
    const context = { token: { issuer: token.issuer, subject: token.subject, audience: token.audience }, claims: token.claims };
    const binding = this.#bindings.find((b) => !b.when || b.when.test(context));
    if (!binding) throw new CleanroomError("auth_no_binding", `no auth binding applies to subject ${token.subject} of issuer ${token.issuerName}`);
    const id = renderTemplate(binding.principal.id, values);
    const scope = binding.principal.scope === undefined ? { text: "" } : renderTemplate(binding.principal.scope, values);
    if ("missing" in id || "missing" in scope) {
      const missing = "missing" in id ? id.missing : "missing" in scope ? scope.missing : "";
      throw new CleanroomError("auth_no_binding", `binding ${binding.name} cannot name a principal: the token has no usable ${missing}`);
    }
    return { token, binding: binding.name, principal: { id: id.text, scope: scope.text, subject: token.subject, issuer: token.issuer } };
  }

  /** May `caller` do `action` to `resource`? A grant must cover it, and an existing resource must be the caller's own. */
  decide(caller: Caller, action: AuthAction, resource: ResourceRef, request: Record<string, unknown> = {}): AuthDecision {
    const base = { action, resource, principal: caller.principal, binding: caller.binding };
    const binding = this.#bindings.find((b) => b.name === caller.binding);
    const context = {
      action,
      principal: caller.principal,
      resource: { kind: resource.kind, id: resource.id ?? "", owner: { principal_id: resource.owner?.principalId ?? "", scope: resource.owner?.scope ?? "" } },
      request,
    };
    const grant = binding?.grants.find((g) =>
      g.actions.some((pattern) => actionMatches(pattern, action)) &&
      (!g.resources || g.resources.includes(resource.kind)) &&
      (!g.condition || g.condition.test(context)));
    if (!grant) {
      return { ...base, allowed: false, reasonCode: "auth_no_grant", message: `principal ${caller.principal.id} (binding ${caller.binding}) has no grant for ${action}` };
    }
    if (resource.id !== undefined && !ownedBy(resource.owner, caller.principal)) {
      const owner = resource.owner ? `principal ${resource.owner.principalId}` : "no principal (it was made by a local caller)";
      return { ...base, grant: grant.name, allowed: false, reasonCode: "auth_owner_mismatch", message: `${resource.kind} ${resource.id} belongs to ${owner}, not to ${caller.principal.id}` };
    }
    return { ...base, grant: grant.name, allowed: true, message: `allowed by binding ${caller.binding}, grant ${grant.name}` };
  }
}

/** A resource is the caller's when its owner is the caller's principal id in the same scope. */
export function ownedBy(owner: ResourceOwner | undefined, principal: Pick<Principal, "id" | "scope">): boolean {
  return owner !== undefined && owner.principalId === principal.id && owner.scope === principal.scope;
}
