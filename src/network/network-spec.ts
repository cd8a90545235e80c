/** Checks a SandboxNetworkSpec and splits it into what nft and the DNS server need. Pure. */
import { CleanroomError } from "../errors/index.ts";
import { cidrContains, isIpv4, parseIpv4, type Cidr } from "./ipv4.ts";
import { sandboxIdPattern, stageNamePattern } from "./names.ts";
import type { NamePolicy } from "./dns-responder.ts";
import type { SetElement } from "./nft-ruleset.ts";
import type { AllowRule, SandboxNetworkSpec } from "./types.ts";

export const defaultStage = "default";
const maxStages = 16;
const maxRulesPerStage = 1024;
const maxPortsPerRule = 64;
const hostnamePattern = /^(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*$/;

export interface CompiledNetworkSpec {
  sandboxId: string;
  /** stages with an allow set */
  stages: string[];
  /** DNS names → stage → ports */
  names: NamePolicy;
  /** IP literals: static elements of their stages' sets */
  literals: SetElement[];
  initialStage: string | null;
  allowAll: boolean;
}

/** Throws CleanroomError (invalid_argument / policy_invalid) saying which entry is wrong. */
export function compileNetworkSpec(spec: SandboxNetworkSpec, neverReachable: readonly Cidr[]): CompiledNetworkSpec {
  const bad = (why: string) => new CleanroomError("invalid_argument", `sandbox network: ${why}`, { sandbox_id: spec.sandboxId });
  if (typeof spec.sandboxId !== "string" || !sandboxIdPattern.test(spec.sandboxId)) throw bad(`sandbox id ${JSON.stringify(spec.sandboxId)} is not 12 characters of [a-z0-9]`);
  if (spec.allow && spec.stages) throw bad("give either allow (no stages) or stages, not both");
  const stages: Record<string, AllowRule[]> = spec.stages ?? (spec.allow ? { [defaultStage]: spec.allow } : {});
  const stageNames = Object.keys(stages);
  if (stageNames.length > maxStages) throw bad(`${stageNames.length} stages exceed ${maxStages}`);
  const names = new Map<string, Map<string, number[]>>();
  const literals: SetElement[] = [];
  for (const stage of stageNames) {
    if (!stageNamePattern.test(stage)) throw bad(`stage name ${JSON.stringify(stage)} must match ${stageNamePattern}`);
    const rules = stages[stage];
    if (!Array.isArray(rules)) throw bad(`stage ${stage}: allow is not a list`);
    if (rules.length > maxRulesPerStage) throw bad(`stage ${stage}: ${rules.length} entries exceed ${maxRulesPerStage}`);
    for (const [i, rule] of rules.entries()) {
      const where = `stage ${stage}, entry ${i}`;
      const ports = checkPorts(rule?.ports, where, bad);
      const host = rule?.host;
      if (typeof host !== "string") throw bad(`${where}: host is not a string`);
      if (isIpv4(host)) {
        const n = parseIpv4(host);
        if (neverReachable.some((c) => cidrContains(c, n))) {
          throw new CleanroomError(
            "policy_invalid",
            `sandbox network: ${where}: ${host} is never reachable from a sandbox (loopback, link-local/metadata, multicast, the sandbox pool or a blocked range)`,
            { sandbox_id: spec.sandboxId, host },
          );
        }
        for (const port of ports) literals.push({ stage, address: host, port });
        continue;
      }
      if (!hostnamePattern.test(host)) throw bad(`${where}: host ${JSON.stringify(host).slice(0, 80)} is not a lowercased DNS name or IPv4 address`);
      const byStage = names.get(host) ?? new Map<string, number[]>();
      byStage.set(stage, [...new Set([...(byStage.get(stage) ?? []), ...ports])].sort((a, b) => a - b));
      names.set(host, byStage);
    }
  }
  const initialStage = spec.initialStage === undefined ? (spec.allow ? defaultStage : null) : spec.initialStage;
  if (initialStage !== null && (typeof initialStage !== "string" || !stageNamePattern.test(initialStage))) {
    throw bad(`initial stage ${JSON.stringify(initialStage)} must match ${stageNamePattern}`);
  }
  return { sandboxId: spec.sandboxId, stages: stageNames, names, literals, initialStage, allowAll: spec.allowAll === true };
}

function checkPorts(ports: unknown, where: string, bad: (why: string) => Error): number[] {
  if (!Array.isArray(ports) || ports.length === 0) throw bad(`${where}: ports must be a non-empty list`);
  if (ports.length > maxPortsPerRule) throw bad(`${where}: ${ports.length} ports exceed ${maxPortsPerRule}`);
  for (const p of ports) if (!Number.isInteger(p) || p < 1 || p > 65535) throw bad(`${where}: port ${JSON.stringify(p)} is not in 1..65535`);
  return [...new Set(ports as number[])];
}
