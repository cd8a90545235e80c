import { createRemoteJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify, type JWTPayload } from "jose";
import { CleanroomError, type ReasonCode } from "../errors/index.ts";
import type { IssuerSettings } from "./settings.ts";

/** A bearer token that verified: who issued it, about whom, and every claim it carried. */
export interface VerifiedToken {
  /** the configured issuer's name */
  issuerName: string;
  issuer: string;
  subject: string;
  audience: string[];
  /** seconds since the epoch */
  expiresAt: number;
  claims: Record<string, unknown>;
}

export interface TokenVerifierOptions {
  /** the clock, in ms since the epoch (tests) */
  now?: () => number;
}

/** Larger than any real OIDC token; a bigger header is someone probing the parser. */
export const MAX_TOKEN_BYTES = 16 * 1024;
/** JWKS kept this long before a refetch */
const JWKS_CACHE_MS = 5 * 60_000;
/** a token naming a kid the cached JWKS lacks refetches at most this often (no refetch storm) */
const JWKS_COOLDOWN_MS = 30_000;
const JWKS_TIMEOUT_MS = 5_000;

type RemoteKeySet = ReturnType<typeof createRemoteJWKSet>;

/** Verifies OIDC bearer tokens against the configured issuers' JWKS. */
export class TokenVerifier {
  readonly #issuers: { settings: IssuerSettings; keys: RemoteKeySet }[];
  readonly #now: () => number;

  constructor(issuers: readonly IssuerSettings[], opts: TokenVerifierOptions = {}) {
    this.#issuers = issuers.map((settings) => ({
      settings,
      keys: createRemoteJWKSet(new URL(settings.jwks_url), { cacheMaxAge: JWKS_CACHE_MS, cooldownDuration: JWKS_COOLDOWN_MS, timeoutDuration: JWKS_TIMEOUT_MS }),
    }));
    this.#now = opts.now ?? Date.now;
  }

  async verify(token: string): Promise<VerifiedToken> {
    if (Buffer.byteLength(token) > MAX_TOKEN_BYTES) throw refused("auth_invalid_token", `the token is larger than ${MAX_TOKEN_BYTES} bytes`);
    const unverified = peek(token);
    const issuer = this.#issuers.find((i) => i.settings.issuer === unverified.iss);
    if (!issuer) throw refused("auth_untrusted_issuer", `tokens from issuer ${JSON.stringify(unverified.iss).slice(0, 200)} are not trusted here (auth.oidc.issuers)`);
    const settings = issuer.settings;
    const nowMs = this.#now();
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, issuer.keys, {
        issuer: settings.issuer,
        audience: settings.audiences,
        algorithms: settings.allowed_algorithms,
        clockTolerance: settings.clock_skew_seconds,
        requiredClaims: ["exp", "sub"],
        currentDate: new Date(nowMs),
      }));
    } catch (err) {
      throw verificationError(err, settings);
    }
    const exp = payload.exp as number;
    const start = payload.iat ?? Math.floor(nowMs / 1000);
    if (exp - start > settings.max_token_lifetime_seconds) {
      throw refused("auth_invalid_token", `the token lives ${exp - start} s, longer than issuer ${settings.name}'s max_token_lifetime_seconds (${settings.max_token_lifetime_seconds})`);
    }
    for (const [claim, wanted] of Object.entries(settings.required_claims)) {
      const actual = payload[claim];
      if (!(actual === wanted || (Array.isArray(actual) && actual.includes(wanted)))) {
        throw refused("auth_invalid_token", `the token's claim ${claim} is not the value issuer ${settings.name} requires`);
      }
    }
    return {
      issuerName: settings.name,
      issuer: settings.issuer,
      subject: payload.sub as string,
      audience: typeof payload.aud === "string" ? [payload.aud] : (payload.aud ?? []),
      expiresAt: exp,
      claims: payload as Record<string, unknown>,
    };
  }
}

/** The claims before verification: only to choose the issuer whose keys decide. */
function peek(token: string): JWTPayload {
  try {
    decodeProtectedHeader(token);
    return decodeJwt(token);
  } catch {
    throw refused("auth_invalid_token", "the bearer token is not a JWT");
  }
}

function verificationError(err: unknown, settings: IssuerSettings): CleanroomError {
  const code = (err as { code?: string }).code;
  const claim = (err as { claim?: string }).claim;
  if (code === "ERR_JWT_CLAIM_VALIDATION_FAILED" && claim === "aud") {
    return refused("auth_audience_mismatch", `the token's audience is not one issuer ${settings.name} accepts (${settings.audiences.join(", ")})`);
  }
  const why: Record<string, string> = {
    ERR_JWT_EXPIRED: "the token has expired",
    ERR_JWS_SIGNATURE_VERIFICATION_FAILED: "the token's signature does not verify",
    ERR_JWKS_NO_MATCHING_KEY: `no key of issuer ${settings.name}'s JWKS matches the token`,
    ERR_JOSE_ALG_NOT_ALLOWED: `the token's algorithm is not in issuer ${settings.name}'s allowed_algorithms`,
    ERR_JWKS_TIMEOUT: `issuer ${settings.name}'s JWKS did not answer in time`,
    ERR_JWKS_INVALID: `issuer ${settings.name}'s JWKS is malformed`,
  };
  const message = code && why[code] ? why[code] : code === "ERR_JWT_CLAIM_VALIDATION_FAILED" ? `the token's ${claim} claim is not valid (${(err as Error).message})` : `the token does not verify: ${(err as Error).message}`;
  return refused("auth_invalid_token", message, err);
}

function refused(code: ReasonCode, message: string, cause?: unknown): CleanroomError {
  return new CleanroomError(code, message, undefined, cause === undefined ? undefined : { cause });
}
