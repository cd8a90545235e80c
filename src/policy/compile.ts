import { createRequire } from "node:module";
import { normalizeRules, type AllowRule } from "./allow-entry.ts";
import type { PolicyBlock, PolicyFile } from "./schema.ts";

export const STAGES = ["repository", "dependencies", "services", "execution"] as const;
export type Stage = (typeof STAGES)[number];

export interface CompiledBlock {
  name: string;
  /** argv; a string command compiles to ["/bin/sh", "-lc", command] */
  command: string[];
  inputs: string[];
  outputs: { dirs: string[]; files: string[] };
  env: Record<string, string>;
}

/** A policy as the daemon enforces it: explicit, canonical, and identified by its hash. Immutable per sandbox. */
export interface CompiledPolicy {
  version: 1;
  image: { ref: string; digest: string };
  /** the allow list of every stage, spelled out: stages never inherit at run time */
  network: { default: "deny"; stages: Record<Stage, AllowRule[]> };
  repository: { enabled: boolean; remote: string; path: string; submodules: boolean };
  resources: { vcpus?: number; memoryBytes?: number; diskBytes?: number };
  docker: { required: boolean };
  dependencies: { reuse: "exact" | "portable"; blocks: CompiledBlock[] };
  services: { blocks: CompiledBlock[] };
  run: { before?: string };
  expose: { https?: { base?: string; routes: { port: number; hosts: string[] }[] } };
}

/** Turns a validated cleanroom.yaml into its compiled form. Pure. */
export function compilePolicy(file: PolicyFile): CompiledPolicy {
  const network = file.sandbox.network;
  const legacy = network?.allow;
  const repositoryAllow = file.repository?.network?.allow;
  const stages = {
    repository: normalizeRules(repositoryAllow ?? legacy ?? []),
    dependencies: normalizeRules(legacy ?? network?.dependencies?.allow ?? []),
    services: normalizeRules(legacy ?? network?.services?.allow ?? []),
    execution: normalizeRules(legacy ?? network?.execution?.allow ?? []),
  };
  const deps = file.sandbox.dependencies;
  const resources = file.sandbox.resources;
  const https = file.expose?.https;
  return {
    version: 1,
    image: { ref: file.sandbox.image.ref, digest: file.sandbox.image.ref.slice(file.sandbox.image.ref.lastIndexOf("@") + 1) },
    network: { default: "deny", stages },
    repository: {
      enabled: file.repository?.enabled ?? true,
      remote: file.repository?.remote ?? "origin",
      path: (file.repository?.path ?? "/workspace").replace(/\/+$/, "") || "/",
      submodules: file.repository?.submodules ?? false,
    },
    resources: {
      ...(resources?.vcpus !== undefined ? { vcpus: resources.vcpus } : {}),
      ...(resources?.memory !== undefined ? { memoryBytes: resources.memory } : {}),
      ...(resources?.disk !== undefined ? { diskBytes: resources.disk } : {}),
    },
    docker: { required: file.sandbox.docker?.required ?? false },
    dependencies: {
      reuse: Array.isArray(deps) || !deps ? "exact" : deps.reuse,
      blocks: (Array.isArray(deps) ? deps : deps?.blocks ?? []).map(compileBlock),
    },
    services: { blocks: (file.sandbox.services ?? []).map(compileBlock) },
    run: file.sandbox.run?.before ? { before: file.sandbox.run.before } : {},
    expose: https ? { https: { ...(https.base ? { base: https.base } : {}), routes: https.routes.map((r) => ({ port: r.port, hosts: r.hosts ?? ["{base}"] })) } } : {},
  };
}

function compileBlock(b: PolicyBlock): CompiledBlock {
  return {
    name: b.name,
    command: typeof b.command === "string" ? ["/bin/sh", "-lc", b.command] : b.command,
    inputs: b.inputs?.files ?? [],
    outputs: { dirs: b.outputs?.dirs ?? [], files: b.outputs?.files ?? [] },
    env: b.env ?? {},
  };
}

/** JSON with object keys sorted at every level: one byte string per policy. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/** `sha256:<hex>` of the canonical JSON. */
export function policyHash(policy: CompiledPolicy): string {
  // loaded on use: an ESM import of node:crypto costs `exec` ~14 ms of start-up even when no policy is read
  const { createHash } = createRequire(import.meta.url)("node:crypto") as typeof import("node:crypto");
  return `sha256:${createHash("sha256").update(canonicalJson(policy)).digest("hex")}`;
}

/**
 * Backend capabilities a policy needs enforced. Launch fails closed (`backend_capability_mismatch`)
 * when the backend lacks one: a policy is never silently weakened.
 */
export function requiredCapabilities(policy: CompiledPolicy): string[] {
  const needs = ["network.default_deny"];
  if (STAGES.some((stage) => policy.network.stages[stage].length > 0)) needs.push("network.allowlist_egress");
  if (policy.resources.vcpus !== undefined) needs.push("sandbox.resources.vcpus");
  if (policy.resources.memoryBytes !== undefined) needs.push("sandbox.resources.memory");
  if (policy.resources.diskBytes !== undefined) needs.push("sandbox.resources.disk");
  if (policy.docker.required) needs.push("sandbox.docker");
  return needs;
}
