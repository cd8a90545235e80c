// The client flags every command shares (--host, --tls-ca, --auth-token-file, --auth-token-env) and the one place
// a command turns them into an SDK client.
import { CleanroomError } from "../errors/index.ts";
import { Cleanroom, readTokenFile } from "../sdk/index.ts";
import { resolveHost } from "./host.ts";

/** What commands receive: the endpoint and how to reach it, resolved from flags, environment and config. */
export interface ClientFlags {
  host?: string;
  tlsCa?: string;
  token?: string;
}

/** The global options as given on the command line (before the command name). */
export interface GlobalOptions {
  host?: string;
  tlsCa?: string;
  authTokenFile?: string;
  authTokenEnv?: string;
}

export const GLOBAL_OPTION_NAMES = ["host", "tls-ca", "auth-token-file", "auth-token-env"] as const;

/**
 * Resolves the global options: the endpoint (--host, CLEANROOM_HOST, config `control_host`), the CA (--tls-ca, else
 * the SDK reads CLEANROOM_TLS_CA) and the token (--auth-token-file, else --auth-token-env's variable; without either
 * flag the SDK reads CLEANROOM_AUTH_TOKEN_FILE, then CLEANROOM_AUTH_TOKEN).
 */
export async function resolveClientFlags(options: GlobalOptions): Promise<ClientFlags> {
  const host = await resolveHost(options.host);
  let token: string | undefined;
  if (options.authTokenFile) token = readTokenFile(options.authTokenFile);
  else if (options.authTokenEnv && options.authTokenEnv !== "CLEANROOM_AUTH_TOKEN") {
    token = process.env[options.authTokenEnv];
    if (!token) throw new CleanroomError("auth_missing", `--auth-token-env ${options.authTokenEnv}: that variable is not set`);
  }
  return { ...(host ? { host } : {}), ...(options.tlsCa ? { tlsCa: options.tlsCa } : {}), ...(token ? { token } : {}) };
}

/** An SDK client from the flags; `headers` go on every call (exec's `traceparent`). */
export function connectClient(flags: ClientFlags, headers?: Record<string, string>): Cleanroom {
  return new Cleanroom({ ...flags, ...(headers ? { headers } : {}) });
}
