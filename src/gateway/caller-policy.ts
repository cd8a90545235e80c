import { hostNotAllowed } from "./refusal.ts";
import type { GatewayCaller } from "./types.ts";

/** Whether the caller's active stage may reach `host:port` upstream (exact, lowercased host match). */
export function callerAllows(caller: GatewayCaller, host: string, port: number): boolean {
  if (caller.allowAll) return true;
  const lower = host.toLowerCase();
  return caller.rules.some((rule) => rule.host === lower && rule.ports.includes(port));
}

/** Throws host_not_allowed unless the caller's active stage allows `host:port`. */
export function requireAllowed(caller: GatewayCaller, host: string, port: number): void {
  if (!callerAllows(caller, host, port)) throw hostNotAllowed(port === 443 ? `${host}:443` : `${host}:${port}`);
}
