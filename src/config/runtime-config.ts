import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { z } from "zod";
import { authPolicySchema, authSettingsSchema } from "../auth/index.ts";
import { CleanroomError } from "../errors/index.ts";
import { BACKEND_NAMES } from "./backend-names.ts";
import { isLoopbackHost } from "./loopback.ts";
import { runtimeConfigPath } from "./paths.ts";
import { parseSize } from "./size.ts";
import { parseYamlDocument } from "./yaml-document.ts";

const backendName = z.enum(BACKEND_NAMES);

const backendSettings = z.strictObject({
  vcpus: z.number().int().min(1).max(256).optional(),
  memory_mib: z.number().int().min(64).max(1024 * 1024).optional(),
  pids_limit: z.number().int().min(16).max(1_000_000).optional(),
  launch_seconds: z.number().int().min(1).max(3600).optional(),
  /** the least a dependency or service block may publish: bytes, or a size like 16GiB */
  minimum_cache_output_volume_bytes: z.union([z.number().int().min(0), z.string()]).transform((value, ctx) => {
    const bytes = typeof value === "number" ? value : parseSize(value);
    if (bytes === undefined) {
      ctx.addIssue({ code: "custom", message: `${JSON.stringify(value)} is not a size; write bytes or e.g. 16GiB` });
      return z.NEVER;
    }
    return bytes;
  }).optional(),
});

const upstreamHost = z
  .string()
  .max(259)
  .regex(/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[1-9][0-9]{0,4})?$/, "expected a lowercase host or host:port");
const ipv4Cidr = z.string().regex(/^(\d{1,3}\.){3}\d{1,3}\/\d{1,2}$/, "expected an IPv4 CIDR block like 10.0.0.0/8");
const envName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "expected an environment variable name");

/** `gateway:` — how the host gateway reaches upstreams. Paths relative to the config file resolve against it. */
const gatewaySettings = z.strictObject({
  git: z.strictObject({ cache_hosts: z.array(upstreamHost).max(1000).optional() }).optional(),
  oci: z.strictObject({ registries: z.record(upstreamHost, z.url({ protocol: /^https?$/ })).optional() }).optional(),
  npm: z.strictObject({ registry: upstreamHost.optional() }).optional(),
  go: z.strictObject({ proxy: upstreamHost.optional() }).optional(),
  rubygems: z.strictObject({ host: upstreamHost.optional() }).optional(),
  upstream: z
    .strictObject({
      /** upstream addresses in these blocks may be dialled (private ranges are refused otherwise) */
      allow_private_cidrs: z.array(ipv4Cidr).max(100).optional(),
      /** extra PEM bundle trusted for upstream TLS */
      ca_file: z.string().min(1).optional(),
    })
    .optional(),
  credentials: z
    .strictObject({
      /** upstream host → daemon env var holding its token */
      env: z.record(upstreamHost, envName).optional(),
      github_app: z
        .strictObject({
          app_id: z.union([z.string().regex(/^\d+$/), z.number().int().positive()]).transform(String),
          installation_id: z.union([z.string().regex(/^\d+$/), z.number().int().positive()]).transform(String),
          private_key_file: z.string().min(1),
          repo_prefixes: z.array(z.string().regex(/^[A-Za-z0-9_.-]+\/([A-Za-z0-9_.-]*)$/, "expected owner/ or owner/repo")).min(1),
        })
        .optional(),
    })
    .optional(),
  max_object_bytes: z.number().int().min(1024).optional(),
});

/** `observability:` — OTLP/HTTP export of traces and metrics, the log format, links to a trace viewer. */
const observabilitySettings = z.strictObject({
  enabled: z.boolean().optional(),
  logs: z.strictObject({ format: z.enum(["text", "json"]).optional() }).optional(),
  otlp: z.strictObject({
    /** the collector's base URL; /v1/traces and /v1/metrics are appended */
    endpoint: z.url({ protocol: /^https?$/ }).optional(),
    protocol: z.enum(["http/json", "http/protobuf"]).optional(),
    /** allow plain http beyond loopback */
    insecure: z.boolean().optional(),
    headers: z.record(z.string().regex(/^[A-Za-z0-9-]+$/, "expected an HTTP header name"), z.string()).optional(),
  }).optional(),
  traces: z.strictObject({
    /** the share of traces exported, 0..1 (default 1) */
    sampling: z.number().min(0).max(1).optional(),
    url_template: z.string().includes("{trace_id}", { message: "expected a URL with {trace_id} in it" }).optional(),
  }).optional(),
}).superRefine((o, ctx) => {
  if (o.enabled && !o.otlp?.endpoint) ctx.addIssue({ code: "custom", path: ["otlp", "endpoint"], message: "observability.enabled needs otlp.endpoint" });
  const endpoint = o.otlp?.endpoint ? new URL(o.otlp.endpoint) : undefined;
  if (endpoint?.protocol === "http:" && !isLoopbackHost(endpoint.hostname) && !o.otlp?.insecure) {
    ctx.addIssue({ code: "custom", path: ["otlp", "endpoint"], message: "plain http beyond loopback needs otlp.insecure: true (or use https)" });
  }
});

/**
 * `$XDG_CONFIG_HOME/cleanroom/config.yaml`, strict: an unknown key fails rather than being ignored.
 * This build reads the keys below; the rest of Cleanroom's config surface arrives with the features it configures.
 */
export const runtimeConfigSchema = z.strictObject({
  default_backend: backendName.optional(),
  control_host: z.string().regex(/^(unix:\/\/\/|http:\/\/|https:\/\/)/, "expected unix:///path or http(s)://host:port").optional(),
  backends: z.strictObject({ linux: backendSettings.optional(), gvisor: backendSettings.optional(), qemu: backendSettings.optional() }).optional(),
  sandbox_lifecycle: z.strictObject({
    warm_pool_size: z.number().int().min(0).max(16).optional(),
    /** a READY sandbox with no running execution and no guest call for this long is suspended (0 or unset: never) */
    idle_suspend_after_seconds: z.number().int().min(0).max(30 * 86400).optional(),
    /** how long a wake may take before the sandbox is declared FAILED */
    wake_timeout_seconds: z.number().int().min(1).max(3600).optional(),
  }).optional(),
  gateway: gatewaySettings.optional(),
  auth: authSettingsSchema.optional(),
  observability: observabilitySettings.optional(),
}).superRefine((config, ctx) => {
  // a key set fetched over plain http beyond this machine could be swapped in transit for the attacker's
  config.auth?.oidc?.issuers.forEach((issuer, index) => {
    const url = new URL(issuer.jwks_url);
    if (url.protocol !== "https:" && !isLoopbackHost(url.hostname)) {
      ctx.addIssue({ code: "custom", path: ["auth", "oidc", "issuers", index, "jwks_url"], message: "jwks_url must be https (plain http only on loopback)" });
    }
  });
});

export type RuntimeConfig = z.infer<typeof runtimeConfigSchema>;

/** Reads and validates the config; a missing file is an empty config, a broken one an error with its position. */
export function loadRuntimeConfig(path: string = runtimeConfigPath()): RuntimeConfig {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return {};
    throw new CleanroomError("invalid_argument", `cannot read ${path}: ${(err as Error).message}`);
  }
  const config = resolveRelativePaths(parseYamlDocument(text, runtimeConfigSchema, path, "invalid_argument"), dirname(resolve(path)));
  // read here, so the daemon and `auth check` see one policy
  if (config.auth?.policy_file) config.auth.policy = loadAuthPolicyFile(config.auth.policy_file);
  return config;
}

/** File paths in the config are relative to the config file, not to wherever the daemon was started. */
function resolveRelativePaths(config: RuntimeConfig, base: string): RuntimeConfig {
  const upstream = config.gateway?.upstream;
  if (upstream?.ca_file) upstream.ca_file = resolve(base, upstream.ca_file);
  const app = config.gateway?.credentials?.github_app;
  if (app) app.private_key_file = resolve(base, app.private_key_file);
  if (config.auth?.policy_file) config.auth.policy_file = resolve(base, config.auth.policy_file);
  return config;
}

/** Reads a policy file of `bindings:` (as `auth.policy_file` or `auth check --policy-file`). */
export function loadAuthPolicyFile(file: string): NonNullable<NonNullable<RuntimeConfig["auth"]>["policy"]> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new CleanroomError("invalid_argument", `cannot read the auth policy file ${file}: ${(err as Error).message}`);
  }
  return parseYamlDocument(text, authPolicySchema, file, "invalid_argument");
}
