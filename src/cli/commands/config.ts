import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { backendNamed, loadRuntimeConfig, runtimeConfigPath } from "../../config/index.ts";
import { CleanroomError } from "../../errors/index.ts";
import { printJson } from "../output.ts";


function starterConfig(defaultBackend: string): string {
  return `# Cleanroom runtime config. Unknown keys are errors.
default_backend: ${defaultBackend}
# control_host: unix:///var/run/cleanroom/cleanroom.sock
backends:
  ${defaultBackend}:
    # resource defaults for new sandboxes; cleanroom.yaml's sandbox.resources can only raise them
    vcpus: 2
    memory_mib: 2048
    pids_limit: 1024
    launch_seconds: 30
    # the least one dependency or service block may publish (more when its last output was bigger)
    # minimum_cache_output_volume_bytes: 16GiB
sandbox_lifecycle:
  # spare sandboxes of the default shape kept ready, so a new sandbox starts without a launch
  warm_pool_size: 1
  # suspend sandboxes that ran nothing and were not touched for this long (0: never); calls wake them
  idle_suspend_after_seconds: 0
  wake_timeout_seconds: 30
# a shared server (serve --listen https://…): every TCP caller presents an OIDC token; see README "A shared server"
# auth:
#   required: true
#   oidc:
#     issuers:
#       - { name: ci, issuer: "https://token.ci.example", audiences: [cleanroom], jwks_url: "https://token.ci.example/jwks" }
#   policy:
#     bindings:
#       - name: pipelines
#         when: has(claims.pipeline_slug)
#         principal: { id: "pipeline:\${claims.pipeline_slug}" }
#         grants: [{ name: own-sandboxes, actions: ["sandbox.*", "execution.*"] }]
`;
}

export async function initConfig(flags: { path?: string; force?: boolean; defaultBackend?: string }): Promise<number> {
  const path = resolve(flags.path ?? runtimeConfigPath());
  const backend = flags.defaultBackend ?? "linux";
  backendNamed(backend, "--default-backend");
  if (existsSync(path) && !flags.force) throw new CleanroomError("failed_precondition", `${path} already exists; pass --force to overwrite it`);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, starterConfig(backend), { mode: 0o644 });
  process.stdout.write(`${path}\n`);
  return 0;
}

export async function validateConfig(flags: { path?: string; json?: boolean }): Promise<number> {
  const path = resolve(flags.path ?? runtimeConfigPath());
  if (!existsSync(path)) throw new CleanroomError("not_found", `${path} does not exist; create one with \`cleanroom config init\``);
  const config = await loadRuntimeConfig(path);
  if (flags.json) printJson({ path, valid: true, config });
  else process.stdout.write(`${path}: valid\n`);
  return 0;
}
