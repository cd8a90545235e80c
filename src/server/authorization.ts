import { createContextKey, type HandlerContext, type Interceptor } from "@connectrpc/connect";
import type { ExecutionService, HostService, ImageService, SandboxService, SnapshotService, CreateSandboxRequest } from "../api/index.ts";
import type { AuthAction, Authorizer, Caller, ResourceKind, ResourceRef } from "../auth/index.ts";
import { ownedBy } from "../auth/index.ts";
import { CleanroomError } from "../errors/index.ts";
import { verifyCompiledPolicy, type CompiledPolicy } from "../policy/index.ts";
import type { ResourceOwner, SandboxSupervisor } from "../sandbox/index.ts";

type MethodsOf<S extends { method: object }> = keyof S["method"];
type ApiMethod =
  | MethodsOf<typeof SandboxService>
  | MethodsOf<typeof ExecutionService>
  | MethodsOf<typeof SnapshotService>
  | MethodsOf<typeof ImageService>
  | MethodsOf<typeof HostService>;

/** What one call must be allowed to do: an action on a resource, with the request's facts for grant conditions. */
interface Check {
  action: AuthAction;
  resource: ResourceRef;
  request?: Record<string, unknown>;
}

/** Resolves the resources a message names (owners come from the daemon's records; an unknown id is not_found). */
interface Resources {
  sandbox(id: string): ResourceRef;
  execution(id: string): ResourceRef;
  snapshot(id: string): ResourceRef;
  createRequest(message: CreateSandboxRequest): Promise<Record<string, unknown>>;
}

type Message = Record<string, unknown> & { sandboxId?: string; executionId?: string; snapshotId?: string };
type Rule =
  | { checks: (message: Message, resources: Resources) => Check[] | Promise<Check[]>; listed?: "sandboxes" | "executions" | "snapshots" }
  | { any: "authenticated" }
  | { localOnly: string };

const onSandbox = (action: AuthAction) => (m: Message, r: Resources): Check[] => [{ action, resource: r.sandbox(m.sandboxId ?? "") }];
const onExecution = (action: AuthAction) => (m: Message, r: Resources): Check[] => [{ action, resource: r.execution(m.executionId ?? "") }];
const onSnapshot = (action: AuthAction) => (m: Message, r: Resources): Check[] => [{ action, resource: r.snapshot(m.snapshotId ?? "") }];
/** an execution or snapshot to be made in a sandbox belongs to the sandbox's owner: the check is against that */
const childOf = (action: AuthAction, kind: ResourceKind) => (m: Message, r: Resources): Check[] => [{ action, resource: { ...r.sandbox(m.sandboxId ?? ""), kind } }];
const creating = async (m: Message, r: Resources): Promise<Check[]> => {
  const request = m as unknown as CreateSandboxRequest;
  const create: Check = { action: "sandbox.create", resource: { kind: "sandbox" }, request: await r.createRequest(request) };
  return request.fromSnapshotId ? [create, { action: "snapshot.restore", resource: r.snapshot(request.fromSnapshotId) }] : [create];
};
const HOST_ADMINISTRATION = "host administration is for local callers on the daemon's socket";

/**
 * Every API method's authorization, typed against the services so a new method cannot go unchecked.
 * Image and host administration act on the whole host: only the trusted local socket may call them.
 */
const RULES: Record<ApiMethod, Rule> = {
  createSandbox: { checks: creating },
  createSandboxStream: { checks: creating },
  getSandbox: { checks: onSandbox("sandbox.get") },
  listSandboxes: { checks: () => [{ action: "sandbox.list", resource: { kind: "sandbox" } }], listed: "sandboxes" },
  terminateSandbox: { checks: onSandbox("sandbox.terminate") },
  suspendSandbox: { checks: onSandbox("sandbox.suspend") },
  resumeSandbox: { checks: onSandbox("sandbox.resume") },
  dialSandboxPort: { checks: onSandbox("sandbox.port.dial") },
  streamSandboxEvents: { checks: onSandbox("sandbox.get") },
  statSandboxPath: { checks: onSandbox("sandbox.file.stat") },
  walkSandboxTree: { checks: onSandbox("sandbox.file.walk") },
  readSandboxFile: { checks: onSandbox("sandbox.file.read") },
  downloadSandboxFile: { checks: onSandbox("sandbox.file.read") },
  writeSandboxFile: { checks: onSandbox("sandbox.file.write") },
  uploadSandboxFile: { checks: onSandbox("sandbox.file.write") },
  removeSandboxPath: { checks: onSandbox("sandbox.file.remove") },
  archiveSandboxPaths: { checks: onSandbox("sandbox.file.archive") },
  extractSandboxArchive: { checks: onSandbox("sandbox.file.extract") },
  createExecution: { checks: childOf("execution.create", "execution") },
  getExecution: { checks: onExecution("execution.get") },
  inspectExecution: { checks: onExecution("execution.inspect") },
  listExecutions: {
    checks: (m, r) => [{ action: "execution.list", resource: m.sandboxId ? { ...r.sandbox(m.sandboxId), kind: "execution" } : { kind: "execution" } }],
    listed: "executions",
  },
  cancelExecution: { checks: onExecution("execution.cancel") },
  writeExecutionStdin: { checks: onExecution("execution.stdin.write") },
  closeExecutionStdin: { checks: onExecution("execution.stdin.close") },
  resizeExecutionTerminal: { checks: onExecution("execution.attach") },
  streamExecution: { checks: onExecution("execution.stream") },
  createSnapshot: { checks: childOf("snapshot.create", "snapshot") },
  getSnapshot: { checks: onSnapshot("snapshot.get") },
  listSnapshots: { checks: () => [{ action: "snapshot.list", resource: { kind: "snapshot" } }], listed: "snapshots" },
  deleteSnapshot: { checks: onSnapshot("snapshot.delete") },
  getVersion: { any: "authenticated" },
  pullImage: { localOnly: HOST_ADMINISTRATION },
  importImage: { localOnly: HOST_ADMINISTRATION },
  listImages: { localOnly: HOST_ADMINISTRATION },
  removeImage: { localOnly: HOST_ADMINISTRATION },
  warmup: { localOnly: HOST_ADMINISTRATION },
  doctor: { localOnly: HOST_ADMINISTRATION },
  storageUsage: { localOnly: HOST_ADMINISTRATION },
  pruneStorage: { localOnly: HOST_ADMINISTRATION },
};

const callerKey = createContextKey<Caller | undefined>(undefined, { description: "the authenticated caller" });

/** The owner a resource made in this call gets: the authenticated principal, none for a local caller. */
export function ownerFor(ctx: HandlerContext): ResourceOwner | undefined {
  const caller = ctx.values.get(callerKey);
  return caller ? { principalId: caller.principal.id, scope: caller.principal.scope } : undefined;
}

/**
 * Authenticates every call on a listener with `auth.required` and authorizes it before the handler runs: unary
 * calls on their message, streaming calls on their first message (a port dial or upload names its sandbox there).
 * Lists come back with the caller's own resources only.
 */
export function authorizationInterceptor(authorizer: Authorizer, resources: Resources): Interceptor {
  return (next) => async (req) => {
    const rule = RULES[req.method.localName as ApiMethod] as Rule | undefined;
    const caller = await authorizer.authenticate(req.header.get("authorization"));
    req.contextValues.set(callerKey, caller);
    if (!rule) throw new CleanroomError("auth_no_grant", `${req.method.name} is not open to remote callers`);
    if ("localOnly" in rule) throw new CleanroomError("auth_no_grant", `${req.method.name}: ${rule.localOnly}`);
    if ("any" in rule) return next(req);
    const authorize = async (message: unknown) => {
      for (const check of await rule.checks(message as Message, resources)) authorizer.require(caller, check.action, check.resource, check.request);
    };
    if (!req.stream) {
      await authorize(req.message);
      const res = await next(req);
      if (!rule.listed || res.stream) return res;
      const list = (res.message as unknown as Record<string, { owner?: { principalId: string; scope: string } }[]>)[rule.listed] ?? [];
      const own = list.filter((item) => ownedBy(item.owner, caller.principal));
      return { ...res, message: { ...res.message, [rule.listed]: own } };
    }
    const input = req.message;
    async function* authorizedInput() {
      let first = true;
      for await (const message of input) {
        if (first) await authorize(message);
        first = false;
        yield message;
      }
    }
    return next({ ...req, message: authorizedInput() });
  };
}

/** The daemon's records as `Resources`. */
export function daemonResources(supervisor: SandboxSupervisor, defaultBackend: string): Resources {
  const ref = (kind: ResourceKind, record: { id: string; owner?: ResourceOwner }): ResourceRef => ({ kind, id: record.id, ...(record.owner ? { owner: record.owner } : {}) });
  return {
    sandbox: (id) => ref("sandbox", supervisor.getSandbox(id)),
    execution: (id) => ref("execution", supervisor.executions.get(id)),
    snapshot: (id) => ref("snapshot", supervisor.getSnapshot(id)),
    createRequest: (message) => createRequestFacts(message, defaultBackend),
  };
}

const MIB = 1024 * 1024;

/**
 * What a grant condition sees of a CreateSandbox request (`request.*`), every field present so a condition is never
 * an error: backend, image, repository, the policy's resources, network default and allowlist, docker, allow-all.
 */
export async function createRequestFacts(message: CreateSandboxRequest, defaultBackend: string): Promise<Record<string, unknown>> {
  // verified here as the handler will: a condition never reads a policy the daemon would refuse
  const policy: Partial<CompiledPolicy> = message.compiledPolicyJson ? await verifyCompiledPolicy(message.compiledPolicyJson, message.policyHash) : {};
  const rules = Object.values(policy.network?.stages ?? {}).flat();
  return {
    backend: message.backend || defaultBackend,
    image: { ref: message.imageRef || policy.image?.ref || "" },
    repository: {
      url: message.repositoryCheckout?.remoteUrl ?? "",
      commit: message.repositoryCheckout?.commit ?? "",
      branch: message.repositoryCheckout?.branch ?? "",
    },
    policy: {
      resources: {
        vcpus: Math.max(message.resources?.vcpus ?? 0, policy.resources?.vcpus ?? 0),
        memory_bytes: Math.max((message.resources?.memoryMib ?? 0) * MIB, policy.resources?.memoryBytes ?? 0),
        disk_bytes: policy.resources?.diskBytes ?? 0,
      },
      network_default: message.dangerouslyAllowAll ? "allow" : "deny",
      network: { hosts: [...new Set(rules.map((r) => r.host))], ports: [...new Set(rules.flatMap((r) => r.ports))] },
      docker: { required: policy.docker?.required ?? false },
    },
    dangerously_allow_all: message.dangerouslyAllowAll,
    from_snapshot: message.fromSnapshotId,
    labels: message.labels,
  };
}
