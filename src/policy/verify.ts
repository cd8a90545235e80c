import { z } from "zod";
import { CleanroomError } from "../errors/index.ts";
import { hostProblem } from "./allow-entry.ts";
import { exposeBaseProblem, exposeHostTemplateProblem } from "./expose-hosts.ts";
import { canonicalJson, policyHash, STAGES, type CompiledPolicy } from "./compile.ts";

const MAX_POLICY_JSON_BYTES = 1024 * 1024;

const rule = z.strictObject({
  host: z.string().refine((h) => h === h.toLowerCase() && hostProblem(h) === undefined, { message: "not an exact lowercase host" }),
  ports: z.array(z.number().int().min(1).max(65535)).min(1),
});
const compiledBlock = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/),
  command: z.array(z.string()).min(1),
  inputs: z.array(z.string()),
  outputs: z.strictObject({ dirs: z.array(z.string()), files: z.array(z.string()) }),
  env: z.record(z.string(), z.string()),
});

/** The compiled policy as the daemon accepts it from a client: the same shape `compilePolicy` produces. */
const compiledPolicySchema = z.strictObject({
  version: z.literal(1),
  image: z.strictObject({ ref: z.string().regex(/@sha256:[0-9a-f]{64}$/), digest: z.string().regex(/^sha256:[0-9a-f]{64}$/) }),
  network: z.strictObject({
    default: z.literal("deny"),
    stages: z.strictObject(Object.fromEntries(STAGES.map((s) => [s, z.array(rule)])) as Record<(typeof STAGES)[number], z.ZodArray<typeof rule>>),
  }),
  repository: z.strictObject({ enabled: z.boolean(), remote: z.string().min(1), path: z.string().startsWith("/"), submodules: z.boolean() }),
  resources: z.strictObject({
    vcpus: z.number().int().min(1).max(256).optional(),
    memoryBytes: z.number().int().positive().optional(),
    diskBytes: z.number().int().positive().optional(),
  }),
  docker: z.strictObject({ required: z.boolean() }),
  dependencies: z.strictObject({ reuse: z.enum(["exact", "portable"]), blocks: z.array(compiledBlock) }),
  services: z.strictObject({ blocks: z.array(compiledBlock) }),
  run: z.strictObject({ before: z.string().optional() }),
  expose: z.strictObject({
    https: z.strictObject({
      base: z.string().refine((base) => !exposeBaseProblem(base)).optional(),
      routes: z.array(z.strictObject({ port: z.number().int().min(1).max(65535), hosts: z.array(z.string().refine((host) => !exposeHostTemplateProblem(host))) })),
    }).optional(),
  }),
});

/**
 * The daemon's check of a policy a client sent: well-formed, canonical, and matching its hash.
 * Anything else is `policy_invalid`; the client must recompile rather than the daemon guessing.
 */
export function verifyCompiledPolicy(json: string, expectedHash: string): CompiledPolicy {
  if (Buffer.byteLength(json) > MAX_POLICY_JSON_BYTES) throw new CleanroomError("policy_invalid", `the compiled policy is larger than ${MAX_POLICY_JSON_BYTES} bytes`);
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    throw new CleanroomError("policy_invalid", "the compiled policy is not JSON");
  }
  const parsed = compiledPolicySchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new CleanroomError("policy_invalid", `the compiled policy is malformed at ${issue.path.join(".") || "(root)"}: ${issue.message}`);
  }
  const policy = parsed.data as CompiledPolicy;
  if (canonicalJson(policy) !== json) throw new CleanroomError("policy_invalid", "the compiled policy is not in canonical form; send it as compiled");
  const actual = policyHash(policy);
  if (actual !== expectedHash) throw new CleanroomError("policy_invalid", `policy hash mismatch: the client said ${expectedHash || "(none)"}, the policy hashes to ${actual}`);
  if (policy.image.ref.slice(policy.image.ref.lastIndexOf("@") + 1) !== policy.image.digest) throw new CleanroomError("policy_invalid", "the image digest does not match the pinned image ref");
  return policy;
}
