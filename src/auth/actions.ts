/** What a caller may be granted: Cleanroom's action names, one per kind of API call. */
export const AUTH_ACTIONS = [
  "sandbox.create", "sandbox.get", "sandbox.list", "sandbox.terminate", "sandbox.suspend", "sandbox.resume",
  "sandbox.file.stat", "sandbox.file.walk", "sandbox.file.read", "sandbox.file.write", "sandbox.file.remove",
  "sandbox.file.archive", "sandbox.file.extract", "sandbox.port.dial",
  "execution.create", "execution.get", "execution.list", "execution.inspect", "execution.cancel",
  "execution.stream", "execution.attach", "execution.stdin.write", "execution.stdin.close",
  "snapshot.create", "snapshot.get", "snapshot.list", "snapshot.delete", "snapshot.restore",
] as const;

export type AuthAction = (typeof AUTH_ACTIONS)[number];

export const RESOURCE_KINDS = ["sandbox", "execution", "snapshot"] as const;
export type ResourceKind = (typeof RESOURCE_KINDS)[number];

export function isAuthAction(value: string): value is AuthAction {
  return (AUTH_ACTIONS as readonly string[]).includes(value);
}

/** The kind of resource an action is about: its first segment. */
export function resourceKindOf(action: AuthAction): ResourceKind {
  return action.slice(0, action.indexOf(".")) as ResourceKind;
}

/**
 * A grant's action pattern: an action name, `*`, or a prefix ending in `.*` (`sandbox.*` covers
 * `sandbox.file.read` too). A pattern that matches no action is a typo, refused when the config loads.
 */
export function isActionPattern(pattern: string): boolean {
  return AUTH_ACTIONS.some((action) => actionMatches(pattern, action));
}

export function actionMatches(pattern: string, action: AuthAction): boolean {
  if (pattern === "*" || pattern === action) return true;
  return pattern.endsWith(".*") && action.startsWith(pattern.slice(0, -1));
}
