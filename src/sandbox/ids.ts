import { randomBytes } from "node:crypto";

const ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789";

/** 12 characters of [a-z0-9]: short enough for interface and cgroup names, ~62 bits of randomness. */
export function newSandboxId(): string {
  return randomToken(12);
}

/** Execution ids are prefixed so `inspect <id>` can tell them from sandbox ids. */
export function newExecutionId(): string {
  return `ex-${randomToken(12)}`;
}

/** Snapshot ids are prefixed too: `inspect <id>` tells all three apart. */
export function newSnapshotId(): string {
  return `snap-${randomToken(12)}`;
}

function randomToken(length: number): string {
  const bytes = randomBytes(length);
  let out = "";
  // 256 % 36 = 4 gives a negligible bias; the ids are names, not secrets
  for (const byte of bytes) out += ALPHABET[byte % ALPHABET.length];
  return out;
}

export const SANDBOX_ID_PATTERN = /^[a-z0-9]{12}$/;
export const EXECUTION_ID_PATTERN = /^ex-[a-z0-9]{12}$/;
export const SNAPSHOT_ID_PATTERN = /^snap-[a-z0-9]{12}$/;
