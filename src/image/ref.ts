import { CleanroomError } from "../errors/index.ts";

/** A parsed image reference: `[registry[:port]/]repo[:tag][@sha256:hex]`, normalized the way Docker does. */
export interface ImageRef {
  /** registry host[:port] as named, e.g. "docker.io", "127.0.0.1:5000" */
  registry: string;
  /** repository path, e.g. "library/alpine" */
  repository: string;
  tag: string | undefined;
  digest: string | undefined;
}

const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;
const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const COMPONENT_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const HOST_LABEL_RE = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
const IPV6_RE = /^\[[0-9A-Fa-f:.]+\]$/;
const MAX_REF_LENGTH = 512;
const MAX_NAME_LENGTH = 255;

export const DOCKER_HUB = "docker.io";

/** True for a "sha256:<64 hex>" string. */
export function isDigest(s: string): boolean {
  return DIGEST_RE.test(s);
}

function invalid(ref: string, why: string): CleanroomError {
  return new CleanroomError(
    "invalid_argument",
    `invalid image reference ${JSON.stringify(ref.slice(0, 200))}: ${why}; use [registry[:port]/]repository[:tag][@sha256:<64 hex>], e.g. docker.io/library/debian:bookworm`,
  );
}

function isRegistryHost(s: string): boolean {
  const colon = s.startsWith("[") ? s.indexOf("]:") + 1 || -1 : s.lastIndexOf(":");
  const host = colon > 0 ? s.slice(0, colon) : s;
  const port = colon > 0 ? s.slice(colon + 1) : undefined;
  if (port !== undefined && (!/^[0-9]{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535)) return false;
  if (IPV6_RE.test(host)) return true;
  return host.length <= 253 && host.split(".").every((l) => HOST_LABEL_RE.test(l));
}

/** Parses and validates an image reference; throws `invalid_argument` with what to type instead. */
export function parseImageRef(ref: string): ImageRef {
  if (typeof ref !== "string" || ref.length === 0) throw invalid(String(ref), "empty");
  if (ref.length > MAX_REF_LENGTH) throw invalid(ref, `longer than ${MAX_REF_LENGTH} characters`);
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST_RE.test(digest)) throw invalid(ref, "the digest must be sha256:<64 lowercase hex>");
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf("/");
  const lastColon = rest.lastIndexOf(":");
  if (lastColon > lastSlash) {
    tag = rest.slice(lastColon + 1);
    rest = rest.slice(0, lastColon);
    if (!TAG_RE.test(tag)) throw invalid(ref, `bad tag ${JSON.stringify(tag)}`);
  }
  if (rest === "sha256" && tag !== undefined && /^[a-f0-9]{64}$/.test(tag)) {
    throw invalid(ref, "a bare digest names no repository; use repository@sha256:<hex>");
  }
  const parts = rest.split("/");
  let registry = DOCKER_HUB;
  const first = parts[0] ?? "";
  if (parts.length > 1 && (first.includes(".") || first.includes(":") || first === "localhost" || first.startsWith("["))) {
    if (!isRegistryHost(first)) throw invalid(ref, `bad registry host ${JSON.stringify(first)}`);
    registry = first;
    parts.shift();
  }
  if (registry === "index.docker.io" || registry === "registry-1.docker.io") registry = DOCKER_HUB;
  if (parts.length === 0 || parts.some((p) => !COMPONENT_RE.test(p))) {
    throw invalid(ref, "repository path components must be lowercase letters, digits and single separators (. _ __ -)");
  }
  if (registry === DOCKER_HUB && parts.length === 1) parts.unshift("library");
  const repository = parts.join("/");
  if (registry.length + 1 + repository.length > MAX_NAME_LENGTH) throw invalid(ref, `name longer than ${MAX_NAME_LENGTH} characters`);
  if (tag === undefined && digest === undefined) tag = "latest";
  return { registry, repository, tag, digest };
}

/** The canonical string of a reference, e.g. "docker.io/library/alpine:3.19" or "host:5000/x@sha256:…". */
export function formatImageRef(r: ImageRef): string {
  return `${r.registry}/${r.repository}${r.tag !== undefined ? `:${r.tag}` : ""}${r.digest !== undefined ? `@${r.digest}` : ""}`;
}

/** The repository name without tag or digest, e.g. "docker.io/library/alpine". */
export function repositoryName(r: ImageRef): string {
  return `${r.registry}/${r.repository}`;
}
