import { isAbsolute, normalize } from "node:path";
import type { LaunchSpec, SandboxResources } from "../types.ts";
import { sandboxIdPattern } from "./sandbox-layout.ts";

export const builtinResources: SandboxResources = { vcpus: 2, memoryMiB: 2048, pidsLimit: 4096 };

const maxEnvBytes = 1024 * 1024;
const maxEnvEntryBytes = 128 * 1024;
const maxLayers = 500;
const hostnamePattern = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i;

export interface CheckedLaunch {
  resources: SandboxResources;
  env: string[];
  hostname: string;
  lowerDirs: string[];
  networkNamespacePath?: string;
  resolvConf?: string;
  extraHosts: [name: string, address: string][];
}

const ipv4Pattern = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const dnsNamePattern = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

/**
 * Checks a launch spec; image env and config are registry data, so they are bounded too.
 * A resource left at 0 takes the backend default. Throws an Error whose message says what is wrong.
 */
export function checkLaunchSpec(spec: LaunchSpec, defaults: Partial<SandboxResources> = {}): CheckedLaunch {
  if (!sandboxIdPattern.test(spec.sandboxId)) throw new Error(`sandbox id ${JSON.stringify(spec.sandboxId)} is not 12 characters of [a-z0-9]`);
  if (!Array.isArray(spec.lowerDirs) || spec.lowerDirs.length === 0) throw new Error("no image layers: lowerDirs is empty");
  if (spec.lowerDirs.length > maxLayers) throw new Error(`${spec.lowerDirs.length} image layers exceed the overlay limit of ${maxLayers}`);
  for (const d of spec.lowerDirs) {
    if (typeof d !== "string" || !isAbsolute(d)) throw new Error(`layer dir ${JSON.stringify(d)} is not an absolute path`);
  }
  const hostname = spec.hostname ?? spec.sandboxId;
  if (!hostnamePattern.test(hostname)) throw new Error(`hostname ${JSON.stringify(hostname)} is not a valid host name label`);
  const netns = spec.networkNamespacePath;
  if (netns !== undefined && (typeof netns !== "string" || !isAbsolute(netns) || normalize(netns) !== netns || netns.length > 4096)) {
    throw new Error(`network namespace path ${JSON.stringify(netns)?.slice(0, 200)} is not an absolute, normalized path`);
  }
  const resolvConf = spec.resolvConf;
  if (resolvConf !== undefined && (typeof resolvConf !== "string" || Buffer.byteLength(resolvConf) > 64 * 1024 || resolvConf.includes("\0"))) {
    throw new Error("resolv.conf contents must be text under 64 KiB");
  }
  const extraHosts = Object.entries(spec.extraHosts ?? {});
  for (const [name, address] of extraHosts) {
    if (!dnsNamePattern.test(name) || !ipv4Pattern.test(address)) throw new Error(`hosts entry ${JSON.stringify(name)} → ${JSON.stringify(address)} is not a DNS name and an IPv4 address`);
  }
  return {
    extraHosts,
    ...(netns !== undefined ? { networkNamespacePath: netns } : {}),
    ...(resolvConf !== undefined ? { resolvConf } : {}),
    resources: resolveResources(spec.resources, defaults),
    env: checkEnv(spec.imageConfig?.env ?? []),
    hostname,
    lowerDirs: spec.lowerDirs.map((d) => normalize(d).replace(/\/+$/, "") || "/"),
  };
}

function resolveResources(requested: Partial<SandboxResources> | undefined, defaults: Partial<SandboxResources>): SandboxResources {
  const pick = (key: keyof SandboxResources): number => {
    const v = requested?.[key];
    if (v !== undefined && v !== 0) return v;
    return defaults[key] || builtinResources[key];
  };
  const r = { vcpus: pick("vcpus"), memoryMiB: pick("memoryMiB"), pidsLimit: pick("pidsLimit") };
  if (!Number.isFinite(r.vcpus) || r.vcpus < 0.01 || r.vcpus > 1024) throw new Error(`vcpus ${r.vcpus} is outside 0.01..1024`);
  if (!Number.isInteger(r.memoryMiB) || r.memoryMiB < 32 || r.memoryMiB > 16 * 1024 * 1024) {
    throw new Error(`memoryMiB ${r.memoryMiB} is not an integer in 32..${16 * 1024 * 1024}`);
  }
  if (!Number.isInteger(r.pidsLimit) || r.pidsLimit < 16 || r.pidsLimit > 4_194_304) throw new Error(`pidsLimit ${r.pidsLimit} is not an integer in 16..4194304`);
  return r;
}

function checkEnv(env: readonly unknown[]): string[] {
  let total = 0;
  const out: string[] = [];
  for (const e of env) {
    if (typeof e !== "string" || e.indexOf("=") < 1 || e.includes("\0")) throw new Error(`image env entry ${JSON.stringify(e).slice(0, 80)} is not KEY=VALUE`);
    const bytes = Buffer.byteLength(e);
    if (bytes > maxEnvEntryBytes) throw new Error(`image env entry ${e.slice(0, 40)}… is longer than ${maxEnvEntryBytes} bytes`);
    total += bytes + 1;
    if (total > maxEnvBytes) throw new Error(`image env exceeds ${maxEnvBytes} bytes`);
    out.push(e);
  }
  return out;
}
