/** Cleanroom's stable reason codes: what an error means, independent of its message. */
export type ReasonCode =
  | "policy_invalid"
  | "policy_conflict"
  | "backend_unavailable"
  | "backend_capability_mismatch"
  | "host_not_allowed"
  | "registry_not_allowed"
  | "runtime_launch_failed"
  | "image_not_found"
  | "image_invalid"
  | "registry_error"
  | "not_found"
  | "invalid_argument"
  | "failed_precondition"
  | "permission_denied"
  | "resource_exhausted"
  | "already_exists"
  | "agent_protocol_error"
  | "agent_unavailable"
  | "execution_failed"
  | "auth_missing"
  | "auth_invalid_token"
  | "auth_untrusted_issuer"
  | "auth_audience_mismatch"
  | "auth_no_binding"
  | "auth_no_grant"
  | "auth_owner_mismatch"
  | "auth_insecure_transport"
  | "internal";

/** An error a user can act on: a stable code, a message that says what to do, optional detail for --json. */
export class CleanroomError extends Error {
  readonly code: ReasonCode;
  readonly detail: Record<string, unknown> | undefined;
  constructor(code: ReasonCode, message: string, detail?: Record<string, unknown>, options?: ErrorOptions) {
    super(message, options);
    this.name = "CleanroomError";
    this.code = code;
    this.detail = detail;
  }
}

/** True when `err` is a CleanroomError carrying `code` (any code when omitted). */
export function isCleanroomError(err: unknown, code?: ReasonCode): err is CleanroomError {
  return err instanceof CleanroomError && (code === undefined || err.code === code);
}

/** The message of anything thrown, for logs and wrapped errors. */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Response header (and stream trailer) in which the daemon's API carries the reason code of an error. */
export const REASON_CODE_HEADER = "cleanroom-reason-code";
