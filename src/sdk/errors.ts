import { Code, ConnectError } from "@connectrpc/connect";
import { REASON_HEADER } from "../api/index.ts";
import { CleanroomError, type ReasonCode } from "../errors/index.ts";

/** Turns a ConnectError from the daemon back into a CleanroomError with its reason code. */
export function fromConnectError(err: unknown, host: string): unknown {
  if (!(err instanceof ConnectError)) return err;
  const reason = err.metadata.get(REASON_HEADER) as ReasonCode | null;
  if (reason) return new CleanroomError(reason, err.rawMessage, undefined, { cause: err });
  if (err.code === Code.Unavailable || err.code === Code.Unknown) {
    const cause = err.cause as NodeJS.ErrnoException | undefined;
    if (cause?.code === "ENOENT" || cause?.code === "ECONNREFUSED" || /ECONNREFUSED|ENOENT/.test(err.rawMessage)) {
      return new CleanroomError("backend_unavailable", `cannot reach the cleanroom daemon at ${host}; start it with \`cleanroom serve\` (as root) or point --host / CLEANROOM_HOST at it`, undefined, { cause: err });
    }
  }
  return new CleanroomError("internal", err.rawMessage, { connect_code: Code[err.code] }, { cause: err });
}
