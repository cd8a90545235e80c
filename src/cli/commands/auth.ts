import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { text } from "node:stream/consumers";
import { AUTH_ACTIONS, RESOURCE_KINDS, createAuthorizer, isAuthAction, resourceKindOf, type AuthDecision, type ResourceKind, type ResourceRef } from "../../auth/index.ts";
import { loadAuthPolicyFile, loadRuntimeConfig, runtimeConfigPath } from "../../config/index.ts";
import { CleanroomError } from "../../errors/index.ts";
import { printJson } from "../output.ts";

export interface AuthCheckFlags {
  tokenFile?: string;
  action?: string;
  resource?: string;
  resourceId?: string;
  ownerPrincipalId?: string;
  ownerScope?: string;
  request?: string;
  json?: boolean;
  config?: string;
  policyFile?: string;
}

const MAX_REQUEST_FIXTURE_BYTES = 1024 * 1024;

/**
 * `auth check`: verifies a token and evaluates one decision with the runtime config's issuers and policy, as the
 * server would, without a server. Exit 0 when allowed, 1 when denied.
 */
export async function authCheck(flags: AuthCheckFlags): Promise<number> {
  if (!flags.tokenFile) throw new CleanroomError("invalid_argument", "--token-file is required (- reads the token from stdin)");
  if (!flags.action || !isAuthAction(flags.action)) throw new CleanroomError("invalid_argument", `--action: expected one of ${AUTH_ACTIONS.join(", ")}`);
  const kind = (flags.resource ?? resourceKindOf(flags.action)) as ResourceKind;
  if (!RESOURCE_KINDS.includes(kind)) throw new CleanroomError("invalid_argument", `--resource: expected one of ${RESOURCE_KINDS.join(", ")}`);
  const configPath = resolve(flags.config ?? runtimeConfigPath());
  const auth = (await loadRuntimeConfig(configPath)).auth;
  if (!auth?.oidc) throw new CleanroomError("invalid_argument", `${configPath} has no auth.oidc.issuers to verify tokens with`);
  const policy = flags.policyFile ? await loadAuthPolicyFile(resolve(flags.policyFile)) : auth.policy;
  if (!policy) throw new CleanroomError("invalid_argument", `${configPath} has no auth.policy or auth.policy_file; or pass --policy-file`);
  const token = (flags.tokenFile === "-" ? await text(process.stdin) : await readFile(flags.tokenFile, "utf8").catch((err: Error) => {
    throw new CleanroomError("invalid_argument", `cannot read --token-file ${flags.tokenFile}: ${err.message}`);
  })).trim();
  if (!token) throw new CleanroomError("invalid_argument", "the token file is empty");
  const owned = flags.ownerPrincipalId !== undefined || flags.ownerScope !== undefined;
  const resource: ResourceRef = {
    kind,
    ...(flags.resourceId !== undefined || owned ? { id: flags.resourceId ?? "" } : {}),
    ...(flags.ownerPrincipalId !== undefined ? { owner: { principalId: flags.ownerPrincipalId, scope: flags.ownerScope ?? "" } } : {}),
  };
  const request = flags.request ? await requestFixture(flags.request) : {};
  const authorizer = await createAuthorizer({ issuers: auth.oidc.issuers, policy });
  const decision = await authorizer.evaluate(token, flags.action, resource, request);
  if (flags.json) printJson(decisionJson(decision));
  else process.stdout.write(`${describe(decision)}\n`);
  return decision.allowed ? 0 : 1;
}

/** `--request`: the `request.*` a grant condition sees, as JSON (what the daemon derives from a CreateSandbox call). */
async function requestFixture(path: string): Promise<Record<string, unknown>> {
  const raw = await readFile(path).catch((err: Error) => {
    throw new CleanroomError("invalid_argument", `cannot read --request ${path}: ${err.message}`);
  });
  if (raw.length > MAX_REQUEST_FIXTURE_BYTES) throw new CleanroomError("invalid_argument", `--request ${path} is larger than ${MAX_REQUEST_FIXTURE_BYTES} bytes`);
  let value: unknown;
  try {
    value = JSON.parse(raw.toString("utf8"));
  } catch (err) {
    throw new CleanroomError("invalid_argument", `--request ${path} is not JSON: ${(err as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new CleanroomError("invalid_argument", `--request ${path} must hold a JSON object`);
  return value as Record<string, unknown>;
}

function describe(d: AuthDecision): string {
  const target = `${d.resource.kind}${d.resource.id ? ` ${d.resource.id}` : ""}`;
  if (d.allowed) return `auth check allowed: ${d.principal?.id} may ${d.action} on ${target} (binding ${d.binding}, grant ${d.grant})`;
  return `auth check denied: ${d.reasonCode}: ${d.message}`;
}

function decisionJson(d: AuthDecision): Record<string, unknown> {
  return {
    allowed: d.allowed,
    principal: d.principal ? { id: d.principal.id, subject: d.principal.subject, issuer: d.principal.issuer, scope: d.principal.scope } : null,
    action: d.action,
    resource: { kind: d.resource.kind, id: d.resource.id ?? "", owner: d.resource.owner ? { principal_id: d.resource.owner.principalId, scope: d.resource.owner.scope } : null },
    binding: d.binding ?? "",
    grant: d.grant ?? "",
    reason: d.reasonCode ?? "",
    message: d.message,
  };
}
