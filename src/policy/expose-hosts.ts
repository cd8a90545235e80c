// The host names HTTPS exposure may serve. Everything lives under cleanroom.localhost: the local CA that signs
// exposure certificates is name-constrained to it, so a repository's cleanroom.yaml can never make a developer's
// machine mint a trusted certificate for any other name.

export const EXPOSURE_DOMAIN = "cleanroom.localhost";
/** expose.https.base when the policy leaves it out */
export const DEFAULT_EXPOSE_BASE = `{sandbox_id}.${EXPOSURE_DOMAIN}`;

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const MAX_HOST_LENGTH = 253;

/** One DNS label as exposure hosts allow it: [a-z0-9-], 1 to 63 characters, no hyphen at either end. */
export function isExposureLabel(label: string): boolean {
  return LABEL.test(label);
}

/**
 * A host pattern under cleanroom.localhost: labels, where `*` stands for exactly one label. Returns why it is not one,
 * or undefined when it is.
 */
export function exposureHostProblem(host: string): string | undefined {
  if (host.length > MAX_HOST_LENGTH) return `is longer than ${MAX_HOST_LENGTH} characters`;
  if (!host.endsWith(`.${EXPOSURE_DOMAIN}`)) return `is not under ${EXPOSURE_DOMAIN}`;
  const labels = host.slice(0, -EXPOSURE_DOMAIN.length - 1).split(".");
  const bad = labels.find((label) => label !== "*" && !isExposureLabel(label));
  if (bad !== undefined) return `has the label "${bad}"; labels are lowercase [a-z0-9-], 1 to 63 characters, or * for any one label`;
  return undefined;
}

/** A sandbox id as it stands in for {sandbox_id} while a template is checked: the shape of a real one. */
const SAMPLE_SANDBOX_ID = "a0b1c2d3e4f5";

/** Why expose.https.base cannot be used, or undefined. `{sandbox_id}` is the only placeholder. */
export function exposeBaseProblem(base: string): string | undefined {
  const expanded = base.replaceAll("{sandbox_id}", SAMPLE_SANDBOX_ID);
  if (/[{}]/.test(expanded)) return "the only placeholder in base is {sandbox_id}";
  if (expanded.includes("*")) return "base cannot hold a wildcard; put * in the route's hosts (\"*.{base}\")";
  return exposureHostProblem(expanded);
}

/** Why a route host template cannot be used, or undefined. It is `{base}` or labels (or `*`) before `.{base}`. */
export function exposeHostTemplateProblem(host: string): string | undefined {
  if (host !== "{base}" && !host.endsWith(".{base}")) return "a route host is {base} or ends in .{base}, e.g. \"*.{base}\"";
  const prefix = host.slice(0, -"{base}".length);
  if (/[{}]/.test(prefix)) return "the only placeholder in a route host is {base}, at its end";
  return exposureHostProblem(`${prefix}${SAMPLE_SANDBOX_ID}.${EXPOSURE_DOMAIN}`);
}

/** The host patterns of a policy's routes for one sandbox: `{base}` and `{sandbox_id}` filled in. */
export function expandExposeHosts(
  https: { base?: string; routes: { port: number; hosts: string[] }[] },
  sandboxId: string,
): { port: number; host: string }[] {
  const base = (https.base || DEFAULT_EXPOSE_BASE).replaceAll("{sandbox_id}", sandboxId);
  return https.routes.flatMap((route) => (route.hosts.length ? route.hosts : ["{base}"]).map((host) => ({ port: route.port, host: host.replaceAll("{base}", base) })));
}
