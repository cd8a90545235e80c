// Exposure from the CLI: `--expose` and `--expose-https` on exec, console and sandbox create, `expose --in`,
// `port-forward --in`, and `ca` for the local CA that HTTPS exposure certificates come from.
import {
  checkRoutes, exposeHttpsPolicyOf, installSystemTrust, loadExposureCa, parseHttpsExposure, parsePortMapping, routesFromPolicy, startExposure, uninstallSystemTrust,
  type Exposure, type ExposureRequest,
} from "../../expose/index.ts";
import { exposureDir } from "../../config/index.ts";
import { CleanroomError } from "../../errors/index.ts";
import { Cleanroom, enumName, SandboxHandle } from "../../sdk/index.ts";
import { connectClient } from "../client.ts";

export interface ExposeFlags {
  /** `[host:]guest` raw TCP forwards */
  expose?: string[];
  /** `[name:]port` HTTPS routes; an empty entry (a bare --expose-https) takes the routes of the policy */
  exposeHttps?: string[];
}

export function wantsExposure(flags: ExposeFlags): boolean {
  return Boolean(flags.expose?.length || flags.exposeHttps?.length);
}

/** Checks the flags that need no sandbox, before one is made for them. */
export function checkExposeFlags(flags: ExposeFlags): void {
  for (const spec of flags.expose ?? []) parsePortMapping(spec);
  for (const spec of flags.exposeHttps ?? []) if (spec) parseHttpsExposure(spec, "sandbox");
}

/** What the flags ask of one sandbox; a bare --expose-https reads expose.https of the sandbox's policy. */
async function exposureRequest(client: Cleanroom, sandbox: SandboxHandle, flags: ExposeFlags): Promise<ExposureRequest> {
  const httpsSpecs = flags.exposeHttps ?? [];
  let info = sandbox.info;
  if (httpsSpecs.includes("") && !info.status) info = (await client.sandboxes.getSandbox({ sandboxId: sandbox.id })).sandbox ?? info;
  const policyRoutes = httpsSpecs.includes("")
    ? routesFromPolicy(exposeHttpsPolicyOf(info.exposeHttps), sandbox.id)
    : [];
  return {
    tcp: (flags.expose ?? []).map(parsePortMapping),
    https: checkRoutes([...httpsSpecs.filter(Boolean).map((spec) => parseHttpsExposure(spec, sandbox.id)), ...policyRoutes]),
  };
}

/** Starts what the flags ask for (undefined when nothing) and says where on stderr. */
export async function startSandboxExposure(client: Cleanroom, sandbox: SandboxHandle, flags: ExposeFlags): Promise<Exposure | undefined> {
  if (!wantsExposure(flags)) return undefined;
  const exposure = await startExposure((port) => sandbox.dialPort(port), await exposureRequest(client, sandbox, flags), {
    label: sandbox.id,
    warn: (line) => process.stderr.write(`cleanroom: warning: ${line}\n`),
    ...(process.env.CLEANROOM_EXPOSE_HTTPS_PORT ? { httpsPort: Number(process.env.CLEANROOM_EXPOSE_HTTPS_PORT) } : {}),
  });
  for (const line of exposure.describe()) process.stderr.write(`cleanroom: exposing ${line}\n`);
  return exposure;
}

const LIVENESS_CHECK_MS = 1000;

/** Keeps an exposure up until Ctrl-C (exit 0) or until the sandbox is gone (exit 1), then closes it. */
export async function holdExposure(client: Cleanroom, sandboxId: string, exposure: Exposure): Promise<number> {
  let timer: NodeJS.Timeout | undefined;
  const ended = await new Promise<string>((resolve) => {
    process.once("SIGINT", () => resolve("interrupted"));
    process.once("SIGTERM", () => resolve("interrupted"));
    timer = setInterval(() => {
      client.sandboxes.getSandbox({ sandboxId }).then(
        ({ sandbox: info }) => {
          const status = enumName(info?.status, "SANDBOX_STATUS_");
          if (status === "STOPPED" || status === "FAILED" || status === "STOPPING") resolve(`sandbox ${sandboxId} is ${status}`);
        },
        (err: Error) => resolve(err.message),
      );
    }, LIVENESS_CHECK_MS);
  });
  clearInterval(timer);
  await exposure.close();
  if (ended === "interrupted") return 0;
  process.stderr.write(`cleanroom: stopped exposing: ${ended}\n`);
  return 1;
}

/** `expose --in <id> [--expose …] [--expose-https …]`: forwards from here until interrupted. */
export async function exposeExisting(flags: ExposeFlags & { host?: string; in?: string }): Promise<number> {
  if (!flags.in) throw new CleanroomError("invalid_argument", "expose needs --in <sandbox-id>");
  if (!wantsExposure(flags)) throw new CleanroomError("invalid_argument", "name something to expose: --expose [host:]guest or --expose-https [name:]port (bare: the policy's routes)");
  checkExposeFlags(flags);
  const client = connectClient(flags);
  const { sandbox: info } = await client.sandboxes.getSandbox({ sandboxId: flags.in });
  const sandbox = new SandboxHandle(client, info ?? { sandboxId: flags.in });
  const exposure = await startSandboxExposure(client, sandbox, flags);
  return holdExposure(client, sandbox.id, exposure!);
}

/** `port-forward --in <id> [host:]guest…`: `expose --in <id> --expose …` by its Cleanroom name. */
export async function portForward(specs: string[], flags: { host?: string; in?: string }): Promise<number> {
  if (!specs.length) throw new CleanroomError("invalid_argument", "name at least one [host:]guest port, e.g. 8080:3000");
  return exposeExisting({ ...flags, expose: specs });
}

/** `ca print|path|install|uninstall`: the local CA behind HTTPS exposure. */
export async function exposureCa(action: "print" | "path" | "install" | "uninstall"): Promise<number> {
  if (action === "uninstall") {
    const anchor = await uninstallSystemTrust();
    process.stdout.write(anchor ? `removed ${anchor} from the system trust store\n` : "the exposure CA was not in the system trust store\n");
    const { rm } = await import("node:fs/promises");
    const dir = exposureDir();
    await rm(dir, { recursive: true, force: true });
    process.stdout.write(`removed ${dir}; the next HTTPS exposure makes a new CA\n`);
    return 0;
  }
  const ca = await loadExposureCa();
  if (action === "print") process.stdout.write(ca.certPem);
  else if (action === "path") process.stdout.write(`${ca.certPath}\n`);
  else {
    const anchor = await installSystemTrust(ca.certPath);
    process.stdout.write(`trusted ${ca.certPath} system-wide (${anchor}); it can only vouch for names under cleanroom.localhost\n`);
    process.stdout.write("browsers with their own certificate store (Firefox, Chrome's NSS database) need it imported there too: `cleanroom ca print`\n");
  }
  return 0;
}
