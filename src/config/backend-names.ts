import { CleanroomError } from "../errors/index.ts";

/** The isolation backends Cleanroom names (config `default_backend`, `--backend`), whether or not this host has them. */
export const BACKEND_NAMES = ["linux", "gvisor", "qemu"] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];

/** `value` as a backend name; anything else is an invalid_argument naming the flag it came from. */
export function backendNamed(value: string, flag: string): BackendName {
  if (!(BACKEND_NAMES as readonly string[]).includes(value)) throw new CleanroomError("invalid_argument", `${flag} ${value}: expected one of ${BACKEND_NAMES.join(", ")}`);
  return value as BackendName;
}
