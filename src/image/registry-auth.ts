import { CleanroomError } from "../errors/index.ts";

export interface AuthChallenge {
  scheme: "bearer" | "basic";
  params: Record<string, string>;
}

/** Parses a `WWW-Authenticate` header: `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`. */
export function parseChallenge(header: string | null): AuthChallenge | undefined {
  if (!header) return undefined;
  const m = /^\s*(Bearer|Basic)\b\s*(.*)$/i.exec(header.slice(0, 8192));
  if (!m) return undefined;
  const params: Record<string, string> = {};
  const re = /([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?\s*/gy;
  const rest = m[2] ?? "";
  re.lastIndex = 0;
  let p: RegExpExecArray | null;
  while (re.lastIndex < rest.length && (p = re.exec(rest))) {
    params[p[1]!.toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, "$1") : (p[3] ?? "");
  }
  return { scheme: m[1]!.toLowerCase() === "bearer" ? "bearer" : "basic", params };
}

export interface Credentials {
  username: string;
  password: string;
}

export function basicHeader(c: Credentials): string {
  return `Basic ${Buffer.from(`${c.username}:${c.password}`).toString("base64")}`;
}

export interface BearerToken {
  token: string;
  expiresAtMs: number;
}

/**
 * Fetches a bearer token from the challenge's realm for `scope` (the distribution token protocol),
 * sending Basic credentials when we have them. `checkUrl` enforces the https/loopback rule on the realm.
 */
export async function fetchBearerToken(
  challenge: AuthChallenge,
  scope: string,
  creds: Credentials | undefined,
  checkUrl: (u: URL) => void,
  signal: AbortSignal | undefined,
): Promise<BearerToken> {
  const realm = challenge.params.realm;
  if (!realm) throw new CleanroomError("registry_error", "the registry asked for a bearer token but named no realm; it is misconfigured");
  let url: URL;
  try {
    url = new URL(realm);
  } catch {
    throw new CleanroomError("registry_error", `the registry's token realm ${JSON.stringify(realm.slice(0, 200))} is not a URL`);
  }
  checkUrl(url);
  if (challenge.params.service) url.searchParams.set("service", challenge.params.service);
  url.searchParams.set("scope", scope);
  const headers: Record<string, string> = { accept: "application/json" };
  if (creds) headers.authorization = basicHeader(creds);
  let res: Response;
  try {
    res = await fetch(url, { headers, signal, redirect: "error" });
  } catch (e) {
    throw new CleanroomError("registry_error", `cannot reach the token service ${url.origin}: ${(e as Error).message}`);
  }
  const text = await readTextBounded(res, 64 << 10);
  if (res.status === 401 || res.status === 403) {
    throw new CleanroomError("registry_error", `the token service ${url.origin} refused ${creds ? "the configured credentials" : "anonymous access"} (HTTP ${res.status}); ${creds ? "check the username/password" : "configure credentials for this registry"}`);
  }
  if (!res.ok) throw new CleanroomError("registry_error", `the token service ${url.origin} answered HTTP ${res.status}: ${text.slice(0, 300)}`);
  let body: { token?: unknown; access_token?: unknown; expires_in?: unknown };
  try {
    body = JSON.parse(text) as typeof body;
  } catch {
    throw new CleanroomError("registry_error", `the token service ${url.origin} returned no JSON`);
  }
  const token = typeof body.token === "string" ? body.token : typeof body.access_token === "string" ? body.access_token : undefined;
  if (!token || token.length > 32 << 10 || /[\r\n]/.test(token)) throw new CleanroomError("registry_error", `the token service ${url.origin} returned no usable token`);
  const expiresIn = typeof body.expires_in === "number" && body.expires_in > 0 ? body.expires_in : 60;
  return { token, expiresAtMs: Date.now() + Math.max(10, expiresIn - 10) * 1000 };
}

/** Reads at most `max` bytes of a response body as text (the rest is cancelled). */
export async function readTextBounded(res: Response, max: number): Promise<string> {
  return (await readBytesBounded(res, max, false)).toString("utf8");
}

/** Reads a body up to `max` bytes; over that it throws (when `strict`) or truncates. */
export async function readBytesBounded(res: Response, max: number, strict: boolean): Promise<Buffer> {
  if (!res.body) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  let size = 0;
  const reader = res.body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.length;
      if (size > max) {
        if (strict) throw new CleanroomError("image_invalid", `response body exceeds ${max} bytes; refusing to read it`);
        chunks.push(Buffer.from(value.subarray(0, value.length - (size - max))));
        break;
      }
      chunks.push(Buffer.from(value));
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  return Buffer.concat(chunks);
}
