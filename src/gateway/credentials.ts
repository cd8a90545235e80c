/**
 * Credentials for the upstream leg, never the guest's: a GitHub App installation token for configured repository
 * prefixes (fail closed when it cannot be minted), then host tokens from the daemon's environment, then
 * `git credential fill` with prompts disabled. Values live only in this process and in upstream requests.
 */
import { createPrivateKey, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import { SignJWT } from "jose";
import { request } from "undici";
import { tryCommand } from "../host-command/index.ts";
import type { Logger } from "../observability/index.ts";
import { GatewayRefusal } from "./refusal.ts";
import type { GithubAppSettings } from "./types.ts";

export type CredentialPurpose = "git" | "http";

/** A credential that is configured for the upstream could not be obtained: the request fails closed, never falls back. */
export class CredentialUnavailable extends GatewayRefusal {
  constructor(host: string) {
    super("upstream_error", 502, "the GitHub App credential configured for this repository could not be minted", host);
  }
}

export interface CredentialChain {
  /** The Authorization header for `url`, or undefined. Throws upstream_error when a configured App cannot mint. */
  authorizationFor(url: URL, purpose: CredentialPurpose): Promise<string | undefined>;
  /** Upstream hosts that have a credential configured (for `doctor`; never the values). */
  configuredHosts(): string[];
  /** Why the configured GitHub App cannot be used (its key does not load), or undefined. */
  githubAppProblem(): string | undefined;
}

/** Built-in host tokens; `gateway.credentials.env` adds more. */
const DEFAULT_TOKEN_ENV: Record<string, string> = { "github.com": "CLEANROOM_GITHUB_TOKEN", "gitlab.com": "CLEANROOM_GITLAB_TOKEN" };
/** Basic-auth user names hosts expect with a token over Git smart HTTP. */
const GIT_TOKEN_USER: Record<string, string> = { "gitlab.com": "oauth2" };
const HELPER_CACHE_MS = 5 * 60_000;

export interface CredentialChainOptions {
  env: NodeJS.ProcessEnv;
  tokenEnv?: Record<string, string>;
  githubApp?: GithubAppSettings;
  logger: Logger;
}

export function credentialChain(opts: CredentialChainOptions): CredentialChain {
  const tokenEnv = { ...DEFAULT_TOKEN_ENV, ...lowercaseKeys(opts.tokenEnv ?? {}) };
  const app = opts.githubApp ? githubAppTokens(opts.githubApp) : undefined;
  const helperCache = new Map<string, { value: string | undefined; until: number }>();

  async function fromGitHelper(url: URL): Promise<string | undefined> {
    const key = url.host;
    const hit = helperCache.get(key);
    if (hit && hit.until > Date.now()) return hit.value;
    const result = await tryCommand("git", ["-c", "credential.interactive=never", "credential", "fill"], {
      timeoutMs: 10_000,
      maxOutputBytes: 64 * 1024,
      env: { PATH: process.env.PATH, HOME: opts.env.HOME ?? "/root", GIT_TERMINAL_PROMPT: "0", GIT_ASKPASS: "", SSH_ASKPASS: "", LC_ALL: "C" },
      input: `protocol=https\nhost=${url.host}\n\n`,
    });
    const fields = new Map(result.code === 0 ? result.stdout.split("\n").map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)] as const) : []);
    const user = fields.get("username");
    const password = fields.get("password");
    const value = user && password ? basic(user, password) : undefined;
    helperCache.set(key, { value, until: Date.now() + HELPER_CACHE_MS });
    return value;
  }

  return {
    async authorizationFor(url, purpose) {
      if (url.protocol !== "https:") return undefined; // never a credential in clear text
      const host = url.hostname.toLowerCase();
      if (app?.covers(host, url.pathname)) {
        const token = await app.token().catch((err: unknown) => {
          opts.logger.error({ err: (err as Error).message, destination_host: host }, "GitHub App token could not be minted");
          throw new CredentialUnavailable(host);
        });
        return purpose === "git" ? basic("x-access-token", token) : `Bearer ${token}`;
      }
      const envName = tokenEnv[host];
      const token = envName ? opts.env[envName] : undefined;
      if (token) return purpose === "git" ? basic(GIT_TOKEN_USER[host] ?? "x-access-token", token) : `Bearer ${token}`;
      return fromGitHelper(url);
    },
    configuredHosts() {
      const hosts = Object.entries(tokenEnv).filter(([, name]) => opts.env[name]).map(([host]) => host);
      return app ? [...new Set([...hosts, "github.com"])] : hosts;
    },
    githubAppProblem() {
      if (!opts.githubApp) return undefined;
      try {
        createPrivateKey(readFileSync(opts.githubApp.privateKeyFile, "utf8"));
        return undefined;
      } catch (err) {
        return `GitHub App private key ${opts.githubApp.privateKeyFile}: ${(err as Error).message}`;
      }
    },
  };
}

interface AppTokens {
  covers(host: string, pathname: string): boolean;
  token(): Promise<string>;
}

function githubAppTokens(settings: GithubAppSettings): AppTokens {
  const apiBase = (settings.apiBaseUrl ?? "https://api.github.com").replace(/\/+$/, "");
  const prefixes = settings.repoPrefixes.map((p) => p.toLowerCase());
  let key: KeyObject | undefined;
  let cached: { token: string; refreshAt: number } | undefined;
  let minting: Promise<string> | undefined;

  async function mint(): Promise<string> {
    key ??= createPrivateKey(readFileSync(settings.privateKeyFile, "utf8"));
    const now = Math.floor(Date.now() / 1000);
    // GitHub allows at most 10 minutes; backdated a minute for clock skew
    const jwt = await new SignJWT({}).setProtectedHeader({ alg: "RS256" }).setIssuer(settings.appId).setIssuedAt(now - 60).setExpirationTime(now + 540).sign(key);
    const res = await request(`${apiBase}/app/installations/${encodeURIComponent(settings.installationId)}/access_tokens`, {
      method: "POST",
      headers: { authorization: `Bearer ${jwt}`, accept: "application/vnd.github+json", "user-agent": "cleanroom-gateway" },
      headersTimeout: 15_000,
      bodyTimeout: 15_000,
    });
    const text = (await res.body.text()).slice(0, 64 * 1024);
    if (res.statusCode !== 201) throw new Error(`GitHub answered ${res.statusCode}`);
    const body = JSON.parse(text) as { token?: unknown; expires_at?: unknown };
    if (typeof body.token !== "string" || typeof body.expires_at !== "string") throw new Error("GitHub's answer has no token");
    // refreshed five minutes before it expires, so a long clone never starts with a token about to lapse
    cached = { token: body.token, refreshAt: Date.parse(body.expires_at) - 5 * 60_000 };
    return body.token;
  }

  return {
    covers(host, pathname) {
      if (host !== "github.com") return false;
      const [owner, repo] = pathname.split("/").filter(Boolean);
      const slug = `${owner ?? ""}/${(repo ?? "").replace(/\.git$/, "")}`.toLowerCase();
      return prefixes.some((p) => slug.startsWith(p));
    },
    token() {
      if (cached && cached.refreshAt > Date.now()) return Promise.resolve(cached.token);
      minting ??= mint().finally(() => (minting = undefined));
      return minting;
    },
  };
}

function basic(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
}

function lowercaseKeys(map: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(map).map(([k, v]) => [k.toLowerCase(), v]));
}
