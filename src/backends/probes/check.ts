import type { BackendName, CapabilityMap } from "../types.ts";

/** pass: fine; warn: works but degraded or unverified; fail: blocks Cleanroom (or the backend it belongs to). */
export type CheckStatus = "pass" | "warn" | "fail";

/** One line of `cleanroom doctor`: what was probed, how it came out, and what to do about a warn or fail. */
export interface HostCheck {
  name: string;
  status: CheckStatus;
  detail: string;
  /** empty on pass */
  hint: string;
}

/** A backend as doctor sees it: usable when none of its checks failed. */
export interface BackendReport {
  backend: BackendName;
  usable: boolean;
  checks: HostCheck[];
  capabilities: CapabilityMap;
}

export interface HostReport {
  checks: HostCheck[];
  backends: BackendReport[];
}

export function pass(name: string, detail: string): HostCheck {
  return { name, status: "pass", detail, hint: "" };
}

export function warn(name: string, detail: string, hint: string): HostCheck {
  return { name, status: "warn", detail, hint };
}

export function fail(name: string, detail: string, hint: string): HostCheck {
  return { name, status: "fail", detail, hint };
}

/** The first line of a command's output, trimmed: what `--version` prints. */
export function firstLine(text: string): string {
  return text.split("\n").find((l) => l.trim())?.trim() ?? "";
}
