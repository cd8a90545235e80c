import { z } from "zod";
import { parseSize } from "../config/index.ts";
import { hostProblem, parseShorthand, portProblem, type AllowRule } from "./allow-entry.ts";
import { exposeBaseProblem, exposeHostTemplateProblem } from "./expose-hosts.ts";

const BLOCK_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const DIGEST_PINNED = /@sha256:[0-9a-f]{64}$/;
const GLOB = /[*?[\]{}]/;

/** `8GiB`-style sizes (B, KiB, MiB, GiB, TiB) as bytes. */
const size = z.unknown().transform((value, ctx) => {
  const bytes = parseSize(value);
  if (bytes === undefined) {
    ctx.addIssue({ code: "custom", message: `${JSON.stringify(value)} is not a size; write it with a unit, e.g. 512MiB or 8GiB` });
    return z.NEVER;
  }
  return bytes;
});

/** One allowlist entry: `host:port` shorthand or `{host, ports}`. One precise message per mistake. */
const allowEntry = z.unknown().transform((value, ctx): AllowRule => {
  const fail = (message: string, path: (string | number)[] = []) => {
    ctx.addIssue({ code: "custom", message, path });
    return z.NEVER;
  };
  if (typeof value === "string") {
    const rule = parseShorthand(value);
    return typeof rule === "string" ? fail(`"${value}" — ${rule}`) : rule;
  }
  if (typeof value === "number") return fail(`${value} — a bare port is not enough; write host:port`);
  if (!value || typeof value !== "object" || Array.isArray(value)) return fail("expected host:port or {host, ports}");
  const entry = value as Record<string, unknown>;
  for (const key of Object.keys(entry)) if (key !== "host" && key !== "ports") return fail(`unknown key "${key}"`, [key]);
  if (typeof entry.host !== "string") return fail("host is required and must be a string", ["host"]);
  const host = entry.host.trim().toLowerCase();
  const problem = hostProblem(host);
  if (problem) return fail(`"${entry.host}" — ${problem}`, ["host"]);
  if (!Array.isArray(entry.ports) || entry.ports.length === 0) return fail("ports is required: a list of port numbers", ["ports"]);
  for (const [i, port] of entry.ports.entries()) {
    const bad = portProblem(port);
    if (bad) return fail(`${JSON.stringify(port)} — ${bad}`, ["ports", i]);
  }
  return { host, ports: entry.ports as number[] };
});

const allowList = z.array(allowEntry, { message: "expected a list of host:port entries" });
const stage = z.strictObject({ allow: allowList });

const relativeInput = z.string().min(1).refine((p) => !p.startsWith("/") && !p.split("/").includes(".."), {
  message: "input files are repository-relative paths without ..",
});

const outputPath = z.string().min(1).refine((p) => !GLOB.test(p), { message: "output paths cannot be glob patterns" });

const block = z.strictObject({
  name: z.string().regex(BLOCK_NAME, "block names are letters, digits, _ . - and start with a letter or digit"),
  command: z.union([z.string().min(1), z.array(z.string()).min(1)], { message: "command is required: a string (run with sh -lc) or a non-empty argv list" })
    .refine((c) => c.length > 0, { message: "command is required: a string (run with sh -lc) or a non-empty argv list" }),
  inputs: z.strictObject({ files: z.array(relativeInput).default([]) }).optional(),
  outputs: z.strictObject({ dirs: z.array(outputPath).default([]), files: z.array(outputPath).default([]) }).optional(),
  env: z.record(z.string(), z.string({ message: "env values are strings (quote numbers)" })).superRefine((env, ctx) => {
    for (const key of Object.keys(env)) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) ctx.addIssue({ code: "custom", path: [key], message: `"${key}" is not a valid environment variable name` });
    }
  }).optional(),
});

export type PolicyBlock = z.output<typeof block>;

const blockList = z.array(block);
const blockSet = z.strictObject({ reuse: z.enum(["exact", "portable"]).default("exact"), blocks: blockList });

/**
 * `dependencies` is a block list or `{reuse, blocks}`. Dispatching on the shape (rather than a zod union)
 * keeps the precise message and position of a mistake inside a block.
 */
const dependencies = z.unknown().transform((value, ctx): z.output<typeof blockList> | z.output<typeof blockSet> => {
  const result = Array.isArray(value) ? blockList.safeParse(value) : blockSet.safeParse(value);
  if (result.success) return result.data;
  for (const issue of result.error.issues) ctx.addIssue({ code: "custom", message: issue.message, path: issue.path.filter((p) => typeof p !== "symbol") });
  return z.NEVER;
});

/** cleanroom.yaml, version 1, as Cleanroom v0.11 defines it. Strict: unknown keys fail. */
export const policyFileSchema = z.strictObject({
  version: z.literal(1, { message: "version must be 1" }),
  repository: z.strictObject({
    enabled: z.boolean().default(true),
    remote: z.string().min(1).default("origin"),
    path: z.string().refine((p) => p.startsWith("/") && !p.split("/").includes(".."), { message: "repository.path must be an absolute path" }).default("/workspace"),
    submodules: z.boolean().default(false),
    network: z.strictObject({ allow: allowList }).optional(),
  }).optional(),
  sandbox: z.strictObject({
    image: z.strictObject({
      ref: z.string({ message: "sandbox.image.ref is required" }).regex(DIGEST_PINNED, "the image must be pinned by digest (name@sha256:…); `cleanroom image bump-ref` resolves a tag"),
    }, { message: "sandbox.image is required" }),
    network: z.strictObject({
      default: z.literal("deny", { message: "only deny is allowed in a policy file; --dangerously-allow-all is a sandbox option" }).optional(),
      allow: allowList.optional(),
      dependencies: stage.optional(),
      services: stage.optional(),
      execution: stage.optional(),
    }).optional(),
    resources: z.strictObject({
      vcpus: z.number({ message: "vcpus is a whole number from 1 to 256" }).int({ message: "vcpus is a whole number from 1 to 256" }).min(1, { message: "vcpus is a whole number from 1 to 256" }).max(256, { message: "vcpus is a whole number from 1 to 256" }).optional(),
      memory: size.optional(),
      disk: size.optional(),
    }).optional(),
    docker: z.strictObject({ required: z.boolean({ message: "expected true or false" }).default(false) }).optional(),
    dependencies: dependencies.optional(),
    services: z.array(block).optional(),
    run: z.strictObject({ before: z.string().min(1, { message: "run.before is a shell command; leave it out rather than empty" }).optional() }).optional(),
  }, { message: "sandbox is required" }),
  expose: z.strictObject({
    https: z.strictObject({
      base: z.string().min(1).superRefine((base, ctx) => {
        const problem = exposeBaseProblem(base);
        if (problem) ctx.addIssue({ code: "custom", message: `"${base}" — ${problem}` });
      }).optional(),
      routes: z.array(z.strictObject({
        port: z.number({ message: "port is required: 1 to 65535" }).int().min(1).max(65535),
        hosts: z.array(z.string().min(1).superRefine((host, ctx) => {
          const problem = exposeHostTemplateProblem(host);
          if (problem) ctx.addIssue({ code: "custom", message: `"${host}" — ${problem}` });
        })).min(1).optional(),
      })).default([]),
    }).optional(),
  }).optional(),
}).superRefine((file, ctx) => {
  const network = file.sandbox.network;
  const staged = ["dependencies", "services", "execution"].filter((s) => network?.[s as "execution"] !== undefined);
  if (network?.allow && staged.length) {
    ctx.addIssue({ code: "custom", path: ["sandbox", "network", "allow"], message: `stage blocks (${staged.join(", ")}) cannot be combined with sandbox.network.allow; move these entries into the stages that need them` });
  }
  const deps = file.sandbox.dependencies;
  const depBlocks = Array.isArray(deps) ? deps : deps?.blocks ?? [];
  const blocks: [string, number, PolicyBlock][] = [
    ...depBlocks.map((b, i) => [Array.isArray(deps) ? "dependencies" : "dependencies.blocks", i, b] as [string, number, PolicyBlock]),
    ...(file.sandbox.services ?? []).map((b, i) => ["services", i, b] as [string, number, PolicyBlock]),
  ];
  const seen = new Set<string>();
  const repoPath = file.repository?.path ?? "/workspace";
  for (const [list, i, b] of blocks) {
    const at = ["sandbox", ...list.split("."), i];
    if (seen.has(b.name)) ctx.addIssue({ code: "custom", path: [...at, "name"], message: `block name "${b.name}" is used twice; names are unique` });
    seen.add(b.name);
    if (file.repository?.enabled === false) ctx.addIssue({ code: "custom", path: at, message: "dependency and service blocks need repository bootstrap; remove repository.enabled: false" });
    checkOutputs(b, repoPath, at, ctx);
  }
});

/** Output paths: not /, not the repository root, no duplicates, no path inside another. */
function checkOutputs(b: PolicyBlock, repoPath: string, at: (string | number)[], ctx: z.RefinementCtx): void {
  const entries: [string, (string | number)[]][] = [];
  for (const kind of ["dirs", "files"] as const) {
    for (const [i, p] of (b.outputs?.[kind] ?? []).entries()) entries.push([p, [...at, "outputs", kind, i]]);
  }
  const resolved: [string, (string | number)[]][] = [];
  for (const [p, path] of entries) {
    const absolute = resolveOutput(p, repoPath);
    if (absolute === "/") ctx.addIssue({ code: "custom", path, message: `"${p}" — an output cannot be /` });
    else if (absolute === repoPath.replace(/\/+$/, "")) ctx.addIssue({ code: "custom", path, message: `"${p}" — an output cannot be the repository root` });
    else {
      const clash = resolved.find(([other]) => other === absolute || other.startsWith(`${absolute}/`) || absolute.startsWith(`${other}/`));
      if (clash) ctx.addIssue({ code: "custom", path, message: `"${p}" — ${clash[0] === absolute ? "is declared twice" : `overlaps ${clash[0]}`}` });
      resolved.push([absolute, path]);
    }
  }
}

/** Guest path of an output: relative ones live under the repository; ${WORKSPACE} is the repository. */
export function resolveOutput(p: string, repoPath: string): string {
  const root = repoPath.replace(/\/+$/, "") || "/";
  const expanded = p.replace(/^(\$\{WORKSPACE\}|\$WORKSPACE)(?=\/|$)/, root);
  const joined = expanded.startsWith("/") || /^(~|\$\{?HOME\}?)(\/|$)/.test(expanded) ? expanded : `${root}/${expanded}`;
  return joined.replace(/\/+/g, "/").replace(/\/\.(?=\/|$)/g, "").replace(/\/+$/, "") || "/";
}

export type PolicyFile = z.output<typeof policyFileSchema>;
