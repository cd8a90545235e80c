import { CleanroomError, type ReasonCode } from "../errors/index.ts";
import { protocolError } from "./control-messages.ts";
import type { ExitStatus } from "./types.ts";

/** One path in a sandbox as the file helper reports it (agent/PROTOCOL.md, "File operations"). */
export interface SandboxPathEntry {
  /** the requested path, or (walk) the path relative to the walked root */
  path: string;
  type: "file" | "dir" | "symlink" | "other";
  /** permission bits plus setuid, setgid and sticky: 0..0o7777 */
  mode: number;
  /** bytes (a symlink: the length of its target) */
  size: number;
  /** modification time in ms since the epoch (rounded down); mtimeSec + mtimeNsec are exact */
  mtimeMs: number;
  mtimeSec: number;
  /** nanoseconds within the second, 0..999999999 */
  mtimeNsec: number;
  uid: number;
  gid: number;
  /** symlinks only */
  linkTarget?: string;
}

/** Linux's PATH_MAX: no path or symlink target the helper can name is longer. */
const MAX_PATH_BYTES = 4096;
const MAX_MESSAGE_CHARS = 500;
const ENTRY_TYPES: ReadonlySet<string> = new Set(["file", "dir", "symlink", "other"]);
const ENTRY_KEYS: ReadonlySet<string> = new Set(["path", "type", "mode", "size", "mtimeSec", "mtimeNsec", "uid", "gid", "linkTarget"]);
const HELPER_CODES: ReadonlySet<string> = new Set([
  "not_found", "permission_denied", "invalid_argument", "failed_precondition", "already_exists", "resource_exhausted", "internal",
]);

function parseLine(line: Buffer | string, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(typeof line === "string" ? line : line.toString("utf8"));
  } catch {
    throw protocolError(`the file helper's ${what} is not JSON`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw protocolError(`the file helper's ${what} is not a JSON object`);
  return value as Record<string, unknown>;
}

function integer(obj: Record<string, unknown>, key: string, min: number, max: number, what: string): number {
  const value = obj[key];
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min || value > max) {
    throw protocolError(`the file helper's ${what}.${key} must be an integer in ${min}..${max}`);
  }
  return value;
}

function pathString(value: unknown, what: string): string {
  if (typeof value !== "string" || value.length === 0 || value.includes("\0") || Buffer.byteLength(value) > MAX_PATH_BYTES) {
    throw protocolError(`the file helper's ${what} must be a non-empty path of at most ${MAX_PATH_BYTES} bytes without NUL`);
  }
  return value;
}

function refuseUnknownKeys(obj: Record<string, unknown>, known: ReadonlySet<string>, what: string): void {
  for (const key of Object.keys(obj)) {
    if (!known.has(key)) throw protocolError(`the file helper's ${what} has an unknown field ${JSON.stringify(key.slice(0, 40))}`);
  }
}

function entryFromObject(obj: Record<string, unknown>, what: string): SandboxPathEntry {
  const path = pathString(obj.path, `${what}.path`);
  const type = obj.type;
  if (typeof type !== "string" || !ENTRY_TYPES.has(type)) throw protocolError(`the file helper's ${what}.type is not file, dir, symlink or other`);
  const mtimeSec = integer(obj, "mtimeSec", -Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER, what);
  const mtimeNsec = integer(obj, "mtimeNsec", 0, 999_999_999, what);
  const entry: SandboxPathEntry = {
    path,
    type: type as SandboxPathEntry["type"],
    mode: integer(obj, "mode", 0, 0o7777, what),
    size: integer(obj, "size", 0, Number.MAX_SAFE_INTEGER, what),
    mtimeMs: mtimeSec * 1000 + Math.floor(mtimeNsec / 1e6),
    mtimeSec,
    mtimeNsec,
    uid: integer(obj, "uid", 0, 0xffffffff, what),
    gid: integer(obj, "gid", 0, 0xffffffff, what),
  };
  if ((obj.linkTarget !== undefined) !== (type === "symlink")) throw protocolError(`the file helper's ${what} has a linkTarget exactly when it is a symlink`);
  if (obj.linkTarget !== undefined) entry.linkTarget = pathString(obj.linkTarget, `${what}.linkTarget`);
  return entry;
}

/** An entry line for the path that was asked about (stat, write). */
export function parseEntryLine(line: Buffer | string, requestedPath: string): SandboxPathEntry {
  const obj = parseLine(line, "entry");
  refuseUnknownKeys(obj, ENTRY_KEYS, "entry");
  const entry = entryFromObject(obj, "entry");
  if (entry.path !== requestedPath) throw protocolError("the file helper's entry is for another path");
  return entry;
}

/** read's header line: the opened file's entry plus whether the content is cut at maxBytes. */
export function parseReadHeader(line: Buffer, requestedPath: string): SandboxPathEntry & { truncated: boolean } {
  const obj = parseLine(line, "read header");
  refuseUnknownKeys(obj, new Set([...ENTRY_KEYS, "truncated"]), "read header");
  if (obj.truncated !== undefined && obj.truncated !== true) throw protocolError("the file helper's read header.truncated must be true when present");
  const entry = entryFromObject(obj, "read header");
  if (entry.path !== requestedPath) throw protocolError("the file helper's read header is for another path");
  if (entry.type !== "file") throw protocolError("the file helper read something that is not a regular file");
  return { ...entry, truncated: obj.truncated === true };
}

/** One line of walk's output: an entry with a clean relative path, or the truncation marker. */
export function parseWalkLine(line: Buffer): SandboxPathEntry | "truncated" {
  const obj = parseLine(line, "walk line");
  if (obj.truncated !== undefined) {
    if (obj.truncated !== true || Object.keys(obj).length !== 1) throw protocolError("the file helper's walk marker must be exactly {\"truncated\":true}");
    return "truncated";
  }
  refuseUnknownKeys(obj, ENTRY_KEYS, "walk entry");
  const entry = entryFromObject(obj, "walk entry");
  const parts = entry.path.split("/");
  if (entry.path !== "." && parts.some((part) => part === "" || part === "." || part === "..")) {
    throw protocolError("the file helper's walk entry path is not a clean relative path");
  }
  return entry;
}

export function parseRemoveResult(line: Buffer): boolean {
  const obj = parseLine(line, "remove result");
  refuseUnknownKeys(obj, new Set(["removed"]), "remove result");
  if (typeof obj.removed !== "boolean") throw protocolError("the file helper's remove result.removed must be a boolean");
  return obj.removed;
}

export function parseExtractResult(line: Buffer): { entries: number; bytes: number } {
  const obj = parseLine(line, "extract result");
  refuseUnknownKeys(obj, new Set(["entries", "bytes"]), "extract result");
  return {
    entries: integer(obj, "entries", 0, Number.MAX_SAFE_INTEGER, "extract result"),
    bytes: integer(obj, "bytes", 0, Number.MAX_SAFE_INTEGER, "extract result"),
  };
}

/** Printable text for an error message: control and bidi characters become "?", at most 500 characters. */
export function sanitizeMessage(text: string): string {
  const cleaned = text.replace(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu, "?");
  const chars = [...cleaned];
  return chars.length > MAX_MESSAGE_CHARS ? `${chars.slice(0, MAX_MESSAGE_CHARS).join("")}…` : cleaned;
}

/**
 * The error for a helper that did not exit 0. Exit 1 carries `{"code","message"}` on stderr; an unknown
 * code becomes internal. Any other exit (the helper could not start, or was killed) is internal.
 */
export function helperFailure(op: string, exit: ExitStatus, stderr: Buffer): CleanroomError {
  const firstLine = stderr.toString("utf8").split("\n", 1)[0] ?? "";
  const detail = { op, exitCode: exit.exitCode, ...(exit.signal ? { signal: exit.signal } : {}) };
  if (exit.exitCode === 1) {
    let obj: Record<string, unknown> | undefined;
    try {
      obj = parseLine(firstLine, "error");
    } catch {
      obj = undefined;
    }
    if (obj && typeof obj.message === "string") {
      const code = typeof obj.code === "string" && HELPER_CODES.has(obj.code) ? (obj.code as ReasonCode) : "internal";
      return new CleanroomError(code, `sandbox file ${op}: ${sanitizeMessage(obj.message)}`, detail);
    }
  }
  const how = exit.signal ? `was killed by ${exit.signal}` : `exited with ${exit.exitCode}`;
  const said = firstLine ? `: ${sanitizeMessage(firstLine)}` : "";
  return new CleanroomError("internal", `sandbox file ${op}: the file helper ${how}${said}`, detail);
}
