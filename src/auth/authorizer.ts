import { CleanroomError, isCleanroomError } from "../errors/index.ts";
import type { AuthAction } from "./actions.ts";
import { AuthPolicy, type AuthDecision, type Caller, type ResourceRef } from "./policy.ts";
import type { AuthPolicySettings, IssuerSettings } from "./settings.ts";
import { TokenVerifier, type TokenVerifierOptions } from "./tokens.ts";

/** Callers already verified, by token, until their token expires: a CLI sends the same token on every call. */
const CALLER_CACHE_SIZE = 512;

/** Authentication (bearer token → caller) and authorization (caller, action, resource → decision) in one place. */
export class Authorizer {
  readonly #verifier: TokenVerifier;
  readonly #policy: AuthPolicy;
  readonly #now: () => number;
  readonly #callers = new Map<string, Caller>();

  constructor(settings: { issuers: readonly IssuerSettings[]; policy: AuthPolicySettings }, opts: TokenVerifierOptions = {}) {
    this.#verifier = new TokenVerifier(settings.issuers, opts);
    this.#policy = new AuthPolicy(settings.policy);
    this.#now = opts.now ?? Date.now;
  }

  /** The caller behind an `Authorization` header value; throws an auth_* CleanroomError. */
  async authenticate(authorization: string | null | undefined): Promise<Caller> {
    const match = /^Bearer ([A-Za-z0-9_.~+/=-]+)$/i.exec(authorization?.trim() ?? "");
    if (!authorization) throw new CleanroomError("auth_missing", "this server requires a bearer token (--auth-token-file or CLEANROOM_AUTH_TOKEN)");
    if (!match?.[1]) throw new CleanroomError("auth_invalid_token", "the Authorization header is not a bearer token");
    return this.callerFor(match[1]);
  }

  async callerFor(token: string): Promise<Caller> {
    const cached = this.#callers.get(token);
    if (cached && cached.token.expiresAt * 1000 > this.#now()) return cached;
    this.#callers.delete(token);
    const caller = this.#policy.bind(await this.#verifier.verify(token));
    if (this.#callers.size >= CALLER_CACHE_SIZE) this.#callers.delete(this.#callers.keys().next().value as string);
    this.#callers.set(token, caller);
    return caller;
  }

  decide(caller: Caller, action: AuthAction, resource: ResourceRef, request?: Record<string, unknown>): AuthDecision {
    return this.#policy.decide(caller, action, resource, request);
  }

  /** Throws the denial's reason code unless `caller` may do `action` to `resource`. */
  require(caller: Caller, action: AuthAction, resource: ResourceRef, request?: Record<string, unknown>): void {
    const decision = this.decide(caller, action, resource, request);
    if (!decision.allowed) throw new CleanroomError(decision.reasonCode ?? "auth_no_grant", decision.message);
  }

  /** `auth check`: the whole decision, token failures included, as data. */
  async evaluate(token: string, action: AuthAction, resource: ResourceRef, request?: Record<string, unknown>): Promise<AuthDecision> {
    try {
      return this.decide(await this.callerFor(token), action, resource, request);
    } catch (err) {
      if (!isCleanroomError(err)) throw err;
      return { allowed: false, action, resource, reasonCode: err.code, message: err.message };
    }
  }
}
