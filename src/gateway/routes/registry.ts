/**
 * OCI registries, pull only: /registry/<registry>/v2/… for any registry policy allows, and /v2/… in the shape
 * `dockerd --registry-mirror` sends (Docker Hub, with `library/` for single-component names).
 *
 * Blobs and manifests by digest are immutable: verified by sha256 while ingested and cached under a key scoped by
 * repository (`oci <registry> <repository> <digest>`), so a copy cached for one repository reaches another only
 * after that repository's upstream says it has the digest. Tags move: they are revalidated upstream on every
 * request, and the manifest they resolve to is stored by its digest; only an unreachable registry lets a tag be
 * answered from what it last resolved to.
 */
import type { ServerResponse } from "node:http";
import { stat } from "node:fs/promises";
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import { requireAllowed } from "../caller-policy.ts";
import { IntegrityMismatch, ObjectTooLarge, type ExpectedDigest, type StoredObject } from "../content-store.ts";
import { ociUpstream, RegistryUnreachable, resolveRegistry, type OciRegistry, type OciUpstreamRequest } from "../oci-upstream.ts";
import { invalidRequest, methodNotAllowed, upstreamError } from "../refusal.ts";
import type { GatewayContext, Route, RouteOutcome, RouteRequest } from "../route.ts";
import { readUpstreamBody, type UpstreamResponse } from "../upstream-client.ts";
import type { GatewayCaller } from "../types.ts";
import { readBounded, STATUS_BODY_BYTES } from "./cached-fetch.ts";
import { parseOciRequest } from "./oci-request.ts";

const API_VERSION = { "docker-distribution-api-version": "registry/2.0" } as const;
/** what a modern client accepts; sent for digests (whatever the guest said) and for tags when the guest said nothing */
const MANIFEST_ACCEPT = [
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
  "application/vnd.docker.distribution.manifest.v2+json",
].join(", ");
const ACCEPT_HEADER = /^[A-Za-z0-9.+\-/*=;, ]{1,1024}$/;
const CONTENT_TYPE = /^[A-Za-z0-9.+\-/]{1,200}(;[A-Za-z0-9.+\-=" ]{0,100})?$/;
/** the distribution spec's recommended manifest size limit */
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
const MAX_TAG_LIST_BYTES = 4 * 1024 * 1024;

/** One guest request being answered. */
interface OciCall {
  ctx: GatewayContext;
  caller: GatewayCaller;
  registry: OciRegistry;
  res: ServerResponse;
  head: boolean;
}

type Served = Pick<RouteOutcome, "status" | "bytes" | "reasonCode">;

/** What a (possibly shared) upstream fetch produced: a stored object, or an answer relayed as it came. */
type Fetched = { kind: "stored"; object: StoredObject } | UpstreamStatus;
type UpstreamStatus = { kind: "status"; status: number; contentType?: string; body: Buffer };

export const registryRoute: Route = {
  prefix: "registry",
  service: "registry",
  handle(request, ctx) {
    const [name, api, ...rest] = request.path.segments;
    const registry = resolveRegistry(name, ctx.settings);
    if (api !== "v2" && (request.method === "GET" || request.method === "HEAD")) {
      throw invalidRequest(`expected /registry/${registry.name}/v2/…`, registry.authority);
    }
    return serveOci(request, ctx, registry, rest, `/registry/${registry.name}/v2`);
  },
};

export const dockerHubRoute: Route = {
  prefix: "v2",
  service: "dockerhub",
  handle(request, ctx) {
    return serveOci(request, ctx, resolveRegistry("docker.io", ctx.settings), request.path.segments, "/v2");
  },
};

async function serveOci(request: RouteRequest, ctx: GatewayContext, registry: OciRegistry, apiSegments: string[], routeBase: string): Promise<RouteOutcome> {
  const { caller, method, path, req, res } = request;
  if (method !== "GET" && method !== "HEAD") throw methodNotAllowed(method, registry.authority);
  const oci = parseOciRequest(apiSegments, path.query, registry.dockerHub, registry.authority);
  // policy is the registry name's, checked before the cache too: a stage that may not pull from it gets nothing of it
  requireAllowed(caller, registry.policyHost, registry.policyPort);
  const call: OciCall = { ctx, caller, registry, res, head: method === "HEAD" };
  let served: Served;
  if (oci.kind === "ping") served = sendPing(call);
  else if (oci.kind === "tag-list") served = await proxyTagList(call, oci.repository, oci.query, routeBase);
  else if (oci.kind === "blob") served = await serveImmutable(call, oci.repository, "blobs", oci.digest);
  else if (oci.kind === "manifest") served = await serveImmutable(call, oci.repository, "manifests", oci.digest);
  else served = await serveTag(call, oci.repository, oci.tag, acceptOf(req.headers.accept));
  return { destinationHost: registry.authority, ...served };
}

const digestKey = (registry: OciRegistry, repository: string, digest: string) => `oci ${registry.name} ${repository} ${digest}`;
const pullScope = (repository: string) => `repository:${repository}:pull`;

/** A blob or a manifest by digest: from this repository's cache entry, or upstream, verified against the digest. */
async function serveImmutable(call: OciCall, repository: string, kind: "blobs" | "manifests", digest: string): Promise<Served> {
  const { ctx, registry } = call;
  const key = digestKey(registry, repository, digest);
  const hit = await ctx.store.lookup(key);
  if (hit) return sendStored(call, hit, "cached");
  const request = { apiPath: `${repository}/${kind}/${digest}`, accept: kind === "manifests" ? MANIFEST_ACCEPT : "*/*", scope: pullScope(repository) };
  const known = await ctx.store.hasBlob(digest);
  if (call.head || known) {
    // bytes cached for another repository are served only once this repository's upstream confirms the digest
    const probe = await ociUpstream(ctx).fetch(call.caller, registry, { ...request, method: "HEAD" });
    if (probe.status === 200 && known) {
      await probe.body.dump();
      return sendStored(call, await adoptBlob(ctx, key, digest, probe), "cached");
    }
    if (call.head) {
      const length = probe.status === 200 ? headerOf(probe.headers, "content-length") : undefined;
      return relay(call, await upstreamStatus(probe), length && /^\d{1,15}$/.test(length) ? { "content-length": length, "docker-content-digest": digest } : {});
    }
    await probe.body.dump();
  }
  const fetched = await ctx.store.once(key, () => fetchImmutable(call, key, { ...request, method: "GET" }, digest));
  return fetched.kind === "stored" ? sendStored(call, fetched.object, "proxied") : relay(call, fetched);
}

async function fetchImmutable(call: OciCall, key: string, request: OciUpstreamRequest, digest: string): Promise<Fetched> {
  const up = await ociUpstream(call.ctx).fetch(call.caller, call.registry, request);
  if (up.status !== 200) return upstreamStatus(up);
  const expected: ExpectedDigest = { algorithm: "sha256", value: Buffer.from(digest.slice("sha256:".length), "hex") };
  const stored = await ingestVerified(call, up.body, expected);
  const meta = { "content-type": contentTypeOf(up.headers) ?? "application/octet-stream" };
  return { kind: "stored", object: await call.ctx.store.record(key, { ...stored, meta }) };
}

/** Points this repository's key at bytes already in the store (their digest is their name, so they are verified). */
async function adoptBlob(ctx: GatewayContext, key: string, digest: string, probe: UpstreamResponse): Promise<StoredObject> {
  const { size } = await stat(ctx.store.blobPath(digest));
  return ctx.store.record(key, { digest, sizeBytes: size, meta: { "content-type": contentTypeOf(probe.headers) ?? "application/octet-stream" } });
}

/**
 * A manifest by tag: asked upstream every time (HEAD first: when the digest it names is cached for this repository,
 * no bytes move), stored by digest. An unreachable or failing registry falls back to what the tag last resolved to.
 */
async function serveTag(call: OciCall, repository: string, tag: string, accept: string): Promise<Served> {
  const { ctx, registry } = call;
  const tagKey = `oci-tag ${registry.name} ${repository} ${tag} ${accept}`;
  const request = { apiPath: `${repository}/manifests/${tag}`, accept, scope: pullScope(repository) };
  let probe: UpstreamResponse;
  try {
    probe = await ociUpstream(ctx).fetch(call.caller, registry, { ...request, method: "HEAD" });
  } catch (err) {
    return answerFromTagCache(call, tagKey, err);
  }
  await probe.body.dump();
  const named = probe.status === 200 ? headerOf(probe.headers, "docker-content-digest") : undefined;
  const known = named && /^sha256:[a-f0-9]{64}$/.test(named) ? await ctx.store.lookup(digestKey(registry, repository, named)) : undefined;
  if (known) {
    if ((await ctx.store.lookup(tagKey))?.digest !== known.digest) await ctx.store.record(tagKey, known);
    return sendStored(call, known, "cached");
  }
  let fetched: Fetched;
  try {
    fetched = await ctx.store.once(tagKey, () => fetchTag(call, repository, tagKey, { ...request, method: "GET" }));
  } catch (err) {
    return answerFromTagCache(call, tagKey, err);
  }
  if (fetched.kind === "stored") return sendStored(call, fetched.object, "proxied");
  return (fetched.status >= 500 ? await fromTagCache(call, tagKey) : undefined) ?? relay(call, fetched);
}

async function fetchTag(call: OciCall, repository: string, tagKey: string, request: OciUpstreamRequest): Promise<Fetched> {
  const { ctx, registry } = call;
  const up = await ociUpstream(ctx).fetch(call.caller, registry, request);
  if (up.status !== 200) return upstreamStatus(up);
  const bytes = await readUpstreamBody(up, MAX_MANIFEST_BYTES, registry.authority, "the manifest");
  const digest = `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
  const claimed = headerOf(up.headers, "docker-content-digest");
  if (claimed !== undefined && claimed !== digest) {
    throw upstreamError(`refused: the manifest's bytes do not match the Docker-Content-Digest ${claimed.slice(0, 80)} the registry sent`, registry.authority);
  }
  const stored = await ingestVerified(call, Readable.from([bytes]), undefined);
  const meta = { "content-type": contentTypeOf(up.headers) ?? manifestMediaType(bytes) };
  const object = await ctx.store.record(digestKey(registry, repository, digest), { ...stored, meta });
  await ctx.store.record(tagKey, object);
  return { kind: "stored", object };
}

/** When the registry could not be reached, the manifest the tag last resolved to; else `err` stands. */
async function answerFromTagCache(call: OciCall, tagKey: string, err: unknown): Promise<Served> {
  const served = err instanceof RegistryUnreachable ? await fromTagCache(call, tagKey) : undefined;
  if (!served) throw err;
  return served;
}

async function fromTagCache(call: OciCall, tagKey: string): Promise<Served | undefined> {
  const last = await call.ctx.store.lookup(tagKey);
  if (!last) return undefined;
  call.ctx.logger.info({ destination_host: call.registry.authority }, "registry unavailable: tag answered from what it last resolved to");
  return sendStored(call, last, "cached");
}

/** tags/list: never cached (tags move); pagination links are pointed back at the gateway. */
async function proxyTagList(call: OciCall, repository: string, query: string, routeBase: string): Promise<Served> {
  const up = await ociUpstream(call.ctx).fetch(call.caller, call.registry, {
    method: "GET",
    apiPath: `${repository}/tags/list`,
    query,
    accept: "application/json",
    scope: pullScope(repository),
  });
  const body = await readUpstreamBody(up, MAX_TAG_LIST_BYTES, call.registry.authority, "the tag list");
  const link = /^<\/v2\/([A-Za-z0-9._\-/?&=%]{1,2000})>(;\s*rel="next")$/.exec(headerOf(up.headers, "link") ?? "");
  const headers: Record<string, string> = { ...API_VERSION, "content-type": contentTypeOf(up.headers) ?? "application/json", "content-length": String(body.length) };
  if (link) headers.link = `<${routeBase}/${link[1]}>${link[2]}`;
  call.res.writeHead(up.status, headers).end(call.head ? undefined : body);
  return { status: up.status, bytes: call.head ? 0 : body.length, reasonCode: "proxied" };
}

function sendPing(call: OciCall): Served {
  const body = "{}";
  call.res.writeHead(200, { ...API_VERSION, "content-type": "application/json", "content-length": String(body.length) }).end(call.head ? undefined : body);
  return { status: 200, bytes: call.head ? 0 : body.length, reasonCode: "proxied" };
}

async function sendStored(call: OciCall, object: StoredObject, reasonCode: "cached" | "proxied"): Promise<Served> {
  const headers = {
    ...API_VERSION,
    "content-type": object.meta["content-type"] ?? "application/octet-stream",
    "docker-content-digest": object.digest,
    etag: `"${object.digest}"`,
  };
  return { status: 200, bytes: await call.ctx.store.send(call.res, object, headers, call.head), reasonCode };
}

/** An upstream answer other than the bytes asked for, read (bounded) so that concurrent waiters can all relay it. */
async function upstreamStatus(up: UpstreamResponse): Promise<UpstreamStatus> {
  const body = Buffer.from(await readBounded(up.body, STATUS_BODY_BYTES));
  const contentType = contentTypeOf(up.headers);
  return { kind: "status", status: up.status, body, ...(contentType ? { contentType } : {}) };
}

/** Relays an upstream status and its (error) body; never its auth challenge, cookies or redirect targets. */
function relay(call: OciCall, fetched: UpstreamStatus, extra: Record<string, string> = {}): Served {
  const body = call.head ? Buffer.alloc(0) : fetched.body;
  const headers = { ...API_VERSION, ...(fetched.contentType ? { "content-type": fetched.contentType } : {}), "content-length": String(body.length), ...extra };
  call.res.writeHead(fetched.status, headers).end(body);
  return { status: fetched.status, bytes: body.length, reasonCode: "proxied" };
}

async function ingestVerified(call: OciCall, source: NodeJS.ReadableStream | AsyncIterable<Uint8Array>, expected: ExpectedDigest | undefined): Promise<{ digest: string; sizeBytes: number }> {
  try {
    return await call.ctx.store.ingest(source, expected);
  } catch (err) {
    if (err instanceof IntegrityMismatch || err instanceof ObjectTooLarge) throw upstreamError(`refused: ${err.message}`, call.registry.authority);
    throw err;
  }
}

/** The guest's Accept for a tag (it picks the variant: index or single manifest), normalised; or the modern default. */
function acceptOf(header: string | undefined): string {
  if (!header || !ACCEPT_HEADER.test(header)) return MANIFEST_ACCEPT;
  const types = header.split(",").map((t) => t.trim()).filter(Boolean);
  return types.length ? types.join(", ") : MANIFEST_ACCEPT;
}

function contentTypeOf(headers: UpstreamResponse["headers"]): string | undefined {
  const value = headerOf(headers, "content-type");
  return value && CONTENT_TYPE.test(value) ? value : undefined;
}

/** A manifest sent without a Content-Type: its own mediaType field says what it is. */
function manifestMediaType(bytes: Buffer): string {
  try {
    const mediaType = (JSON.parse(bytes.toString("utf8")) as { mediaType?: unknown }).mediaType;
    if (typeof mediaType === "string" && CONTENT_TYPE.test(mediaType)) return mediaType;
  } catch {
    // not JSON: served as what it is, bytes
  }
  return "application/octet-stream";
}

function headerOf(headers: UpstreamResponse["headers"], name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}
