/**
 * The pull-only subset of the OCI distribution API a guest may ask for, parsed from the path after `/v2/`.
 * Names, tags and digests follow the distribution spec's grammar; anything else is refused before an upstream
 * hears of it (uploads, the catalog, deletes, other digest algorithms).
 */
import { invalidRequest } from "../refusal.ts";

export type OciRequest =
  | { kind: "ping" }
  | { kind: "manifest"; repository: string; digest: string }
  | { kind: "tagged-manifest"; repository: string; tag: string }
  | { kind: "blob"; repository: string; digest: string }
  | { kind: "tag-list"; repository: string; query: string };

const MAX_NAME_CHARS = 255;
const NAME_COMPONENT = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
const SHA256_DIGEST = /^sha256:[a-f0-9]{64}$/;
const MAX_PAGE_SIZE = 10_000;

/**
 * `segments` are the decoded segments after `v2`; `dockerHub` adds Docker Hub's `library/` to single-component
 * names. `host` only labels refusals.
 */
export function parseOciRequest(segments: readonly string[], query: string, dockerHub: boolean, host: string): OciRequest {
  if (segments.length === 0) return { kind: "ping" };
  if (segments.length < 3) throw invalidRequest("not a pull request of the OCI distribution API (catalog and other endpoints are not served)", host);
  const [kind, reference] = segments.slice(-2) as [string, string];
  const repository = repositoryName(segments.slice(0, -2), dockerHub, host);
  if (kind === "manifests") {
    if (TAG.test(reference)) return { kind: "tagged-manifest", repository, tag: reference };
    return { kind: "manifest", repository, digest: sha256Digest(reference, host) };
  }
  if (kind === "blobs") return { kind: "blob", repository, digest: sha256Digest(reference, host) };
  if (kind === "tags" && reference === "list") return { kind: "tag-list", repository, query: tagsQuery(query, host) };
  throw invalidRequest(`/v2/…/${kind}/… is not served: only manifests, blobs and tags/list can be pulled`, host);
}

function repositoryName(segments: readonly string[], dockerHub: boolean, host: string): string {
  const components = segments.flatMap((s) => s.split("/"));
  if (!components.every((c) => NAME_COMPONENT.test(c))) {
    throw invalidRequest("repository names are lowercase components of [a-z0-9] joined by '.', '_', '__' or '-', separated by '/'", host);
  }
  const name = (dockerHub && components.length === 1 ? ["library", ...components] : components).join("/");
  if (name.length > MAX_NAME_CHARS) throw invalidRequest(`repository name longer than ${MAX_NAME_CHARS} characters`, host);
  return name;
}

function sha256Digest(reference: string, host: string): string {
  if (!SHA256_DIGEST.test(reference)) throw invalidRequest(`"${reference.slice(0, 80)}" is not a tag or a sha256 digest (other digest algorithms are refused)`, host);
  return reference;
}

/** tags/list keeps only its pagination parameters, validated and re-encoded. */
function tagsQuery(query: string, host: string): string {
  const params = new URLSearchParams(query);
  const kept = new URLSearchParams();
  for (const [name, value] of params) {
    if (name === "n" && /^\d{1,5}$/.test(value) && Number(value) <= MAX_PAGE_SIZE) kept.set("n", value);
    else if (name === "last" && TAG.test(value)) kept.set("last", value);
    else throw invalidRequest(`tags/list takes only n (a page size) and last (a tag)`, host);
  }
  return kept.toString();
}
