import { Code, ConnectError } from "@connectrpc/connect";
import { CleanroomError, REASON_CODE_HEADER, type ReasonCode } from "../errors/index.ts";
import type { Logger } from "../observability/index.ts";

const CODE_BY_REASON: Partial<Record<ReasonCode, Code>> = {
  policy_invalid: Code.InvalidArgument,
  invalid_argument: Code.InvalidArgument,
  image_invalid: Code.InvalidArgument,
  not_found: Code.NotFound,
  image_not_found: Code.NotFound,
  policy_conflict: Code.FailedPrecondition,
  failed_precondition: Code.FailedPrecondition,
  backend_capability_mismatch: Code.FailedPrecondition,
  backend_unavailable: Code.Unavailable,
  agent_unavailable: Code.Unavailable,
  registry_error: Code.Unavailable,
  host_not_allowed: Code.PermissionDenied,
  registry_not_allowed: Code.PermissionDenied,
  permission_denied: Code.PermissionDenied,
  resource_exhausted: Code.ResourceExhausted,
  already_exists: Code.AlreadyExists,
  auth_missing: Code.Unauthenticated,
  auth_invalid_token: Code.Unauthenticated,
  auth_untrusted_issuer: Code.Unauthenticated,
  auth_audience_mismatch: Code.Unauthenticated,
  auth_no_binding: Code.PermissionDenied,
  auth_no_grant: Code.PermissionDenied,
  auth_owner_mismatch: Code.PermissionDenied,
  auth_insecure_transport: Code.FailedPrecondition,
};

/** The one place daemon errors become ConnectRPC errors. Unexpected errors are logged and hidden. */
export function toConnectError(err: unknown, log: Logger): ConnectError {
  if (err instanceof ConnectError) return err;
  if (err instanceof CleanroomError) {
    const metadata = new Headers({ [REASON_CODE_HEADER]: err.code });
    return new ConnectError(err.message, CODE_BY_REASON[err.code] ?? Code.Internal, metadata);
  }
  log.error({ err }, "unexpected error in request");
  return new ConnectError("internal error; see the daemon log", Code.Internal, new Headers({ [REASON_CODE_HEADER]: "internal" }));
}
