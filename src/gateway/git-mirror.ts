/**
 * Bare mirrors of upstream Git repositories under `<stateDir>/git/mirrors`: one per canonical upstream URL, named
 * by the URL's sha256 (the URL kept beside it in `<name>.url`). A mirror is refreshed on demand, once at a time.
 * The git that talks to the upstream obeys the gateway's rules for upstreams: it dials only the address the
 * gateway resolved and vetted, follows no redirects, speaks only https, reads no host config, never prompts,
 * and gets its credential through the environment, so the credential is never on disk or in /proc/<pid>/cmdline.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { CommandError, runCommand } from "../host-command/index.ts";
import type { Logger } from "../observability/index.ts";
import { CredentialUnavailable, type CredentialChain } from "./credentials.ts";
import { GatewayRefusal, upstreamError } from "./refusal.ts";
import type { UpstreamClient } from "./upstream-client.ts";

const CLONE_TIMEOUT_MS = 20 * 60_000;
const FETCH_TIMEOUT_MS = 10 * 60_000;
const GIT_OUTPUT_BYTES = 256 * 1024;
const SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt";

/** "mirrored": refreshed from the upstream just now; "cached": the upstream could not be reached, the mirror could. */
export type MirrorState = "mirrored" | "cached";

/** The repository a mirror copies: `url` is canonical (https, lowercased host, validated path). */
export interface MirrorUpstream {
  url: URL;
  host: string;
  port: number;
  authority: string;
}

export interface GitMirrorsOptions {
  /** `<stateDir>/git` */
  root: string;
  upstream: UpstreamClient;
  credentials: CredentialChain;
  /** extra PEM trusted for upstream TLS besides the system bundle */
  caFile?: string;
  logger: Logger;
}

export class GitMirrors {
  readonly #opts: GitMirrorsOptions;
  readonly #inFlight = new Map<string, Promise<MirrorState>>();
  /** how each mirror's last refresh in this process went; a mirror not refreshed since start-up counts as cached */
  readonly #lastState = new Map<string, MirrorState>();
  /** mirrors the daemon itself just refreshed for a checkout: until when the checkout's fetches skip the upstream */
  readonly #freshUntil = new Map<string, number>();
  #prepared: Promise<void> | undefined;

  constructor(opts: GitMirrorsOptions) {
    this.#opts = opts;
  }

  /** The directory holding the mirrors: `git http-backend`'s project root. */
  get projectRoot(): string {
    return join(this.#opts.root, "mirrors");
  }

  /** An empty HOME for every git the gateway runs, so no user config or credential helper is read. */
  get home(): string {
    return join(this.#opts.root, "home");
  }

  /** `<sha256 of the URL>.git`: the mirror's directory name under projectRoot. */
  mirrorName(url: URL): string {
    return `${urlHash(url)}.git`;
  }

  /** Refreshes the mirror from its upstream (cloning it the first time); when that fails, an existing mirror is used. */
  refresh(upstream: MirrorUpstream): Promise<MirrorState> {
    const name = this.mirrorName(upstream.url);
    const running = this.#inFlight.get(name);
    if (running) return running;
    const started = this.#refreshNow(upstream, name).finally(() => this.#inFlight.delete(name));
    this.#inFlight.set(name, started);
    return started;
  }

  /**
   * The daemon refreshed this mirror to resolve a sandbox's commit: for `ms`, fetches are served from the mirror as
   * it is, so the checkout (its fetch, its `remote set-head`) does not wait for the upstream twice more.
   */
  holdFresh(upstream: MirrorUpstream, ms: number): void {
    this.#freshUntil.set(this.mirrorName(upstream.url), Date.now() + ms);
  }

  /** A guest's info/refs: a refresh, unless the daemon holds the mirror fresh for a checkout (holdFresh). */
  refreshUnlessHeld(upstream: MirrorUpstream): Promise<MirrorState> {
    const name = this.mirrorName(upstream.url);
    const state = this.#lastState.get(name);
    if (state && Date.now() < (this.#freshUntil.get(name) ?? 0)) return Promise.resolve(state);
    return this.refresh(upstream);
  }

  /** For requests that do not refresh (upload-pack after info/refs): the mirror's state, cloning it when there is none. */
  async ensure(upstream: MirrorUpstream): Promise<MirrorState> {
    const name = this.mirrorName(upstream.url);
    await this.#prepare();
    if (!this.#inFlight.has(name) && (await isDirectory(join(this.projectRoot, name)))) return this.#lastState.get(name) ?? "cached";
    return this.refresh(upstream);
  }

  async #refreshNow(upstream: MirrorUpstream, name: string): Promise<MirrorState> {
    await this.#prepare();
    const dir = join(this.projectRoot, name);
    const exists = await isDirectory(dir);
    try {
      const leg = await this.#upstreamLeg(upstream);
      const run = { env: leg.env, maxOutputBytes: GIT_OUTPUT_BYTES };
      if (exists) await runCommand("git", [...leg.args, "--git-dir", dir, "fetch", "--prune", "--quiet", "origin"], { ...run, timeoutMs: FETCH_TIMEOUT_MS });
      else await this.#clone(upstream.url, dir, (args) => runCommand("git", [...leg.args, ...args], { ...run, timeoutMs: CLONE_TIMEOUT_MS }));
    } catch (err) {
      // a policy verdict on the address the name resolves to now is not an outage: nothing is served
      if (err instanceof GatewayRefusal && err.reasonCode === "host_not_allowed") throw err;
      // nor is a configured credential that cannot be obtained: access is not re-proved, so the mirror is not served
      if (err instanceof CredentialUnavailable) throw err;
      const why = err instanceof CommandError ? lastLine(err.stderr) || err.message : (err as Error).message;
      this.#opts.logger.warn({ destination_host: upstream.authority, mirror: name, err: err instanceof Error ? err.message : String(err) }, "git mirror refresh failed");
      if (!exists) throw upstreamError(`could not mirror ${upstream.url.href}: ${why}`.slice(0, 1024), upstream.authority);
      this.#lastState.set(name, "cached");
      return "cached";
    }
    this.#lastState.set(name, "mirrored");
    return "mirrored";
  }

  /** Clones into a temporary directory and renames it into place, so a mirror that exists is always complete. */
  async #clone(url: URL, dir: string, git: (args: string[]) => Promise<unknown>): Promise<void> {
    const tmp = join(this.#opts.root, "tmp", `${randomBytes(12).toString("hex")}.git`);
    try {
      await git(["clone", "--mirror", "--quiet", "--", url.href, tmp]);
      await writeFile(join(this.projectRoot, `${urlHash(url)}.url`), `${url.href}\n`, { mode: 0o600 });
      await rename(tmp, dir);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }

  /** Arguments and environment of a git that may talk to `upstream` and nothing else. */
  async #upstreamLeg(upstream: MirrorUpstream): Promise<{ args: string[]; env: NodeJS.ProcessEnv }> {
    const address = await this.#opts.upstream.resolveForDial(upstream.host, upstream.port);
    const authorization = await this.#opts.credentials.authorizationFor(upstream.url, "git");
    const config: [string, string][] = [
      ["http.curloptResolve", `${upstream.host}:${upstream.port}:${address}`],
      ["http.followRedirects", "false"],
      ["protocol.allow", "never"],
      ["protocol.https.allow", "always"],
      ["credential.helper", ""],
      // a stalled upstream ends the refresh instead of holding every waiting clone until the timeout
      ["http.lowSpeedLimit", "1024"],
      ["http.lowSpeedTime", "60"],
    ];
    if (this.#opts.caFile) config.push(["http.sslCAInfo", this.#caBundlePath()]);
    const secret: [string, string][] = [];
    if (authorization) {
      if (/[\r\n]/.test(authorization)) throw upstreamError("the configured credential is not a valid header value", upstream.authority);
      // scoped to the upstream's origin: even a git that followed somewhere else would not send it there
      secret.push([`http.${upstream.url.origin}/.extraHeader`, `Authorization: ${authorization}`]);
    }
    return { args: config.flatMap(([key, value]) => ["-c", `${key}=${value}`]), env: { ...isolatedGitEnv(this.home), ...gitConfigEnv(secret) } };
  }

  #caBundlePath(): string {
    return join(this.#opts.root, "ca-bundle.pem");
  }

  /** Creates the directories, drops partial clones of a previous run and writes the CA bundle (once). */
  #prepare(): Promise<void> {
    this.#prepared ??= (async () => {
      await rm(join(this.#opts.root, "tmp"), { recursive: true, force: true });
      for (const dir of [this.projectRoot, this.home, join(this.#opts.root, "tmp")]) await mkdir(dir, { recursive: true, mode: 0o700 });
      if (this.#opts.caFile) {
        // http.sslCAInfo replaces git's default bundle, so the extra CA is added to the system roots, not swapped in
        const system = await readFile(SYSTEM_CA_BUNDLE, "utf8").catch(() => "");
        const extra = await readFile(this.#opts.caFile, "utf8");
        const tmp = `${this.#caBundlePath()}.${randomBytes(6).toString("hex")}`;
        await writeFile(tmp, `${system}\n${extra}\n`, { mode: 0o644 });
        await rename(tmp, this.#caBundlePath());
      }
    })().catch((err: unknown) => {
      this.#prepared = undefined;
      throw err;
    });
    return this.#prepared;
  }
}

/** The environment of every git the gateway runs: no system, global or user config, no prompts, no ambient secrets. */
export function isolatedGitEnv(home: string): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin",
    LC_ALL: "C",
    HOME: home,
    XDG_CONFIG_HOME: join(home, ".config"),
    GIT_CONFIG_NOSYSTEM: "1",
    GIT_CONFIG_GLOBAL: "/dev/null",
    GIT_TERMINAL_PROMPT: "0",
    GIT_ASKPASS: "",
    SSH_ASKPASS: "",
  };
}

/** Config entries passed as GIT_CONFIG_COUNT/KEY_n/VALUE_n: in the environment, not argv and not a config file. */
export function gitConfigEnv(entries: readonly (readonly [string, string])[]): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { GIT_CONFIG_COUNT: String(entries.length) };
  entries.forEach(([key, value], i) => {
    env[`GIT_CONFIG_KEY_${i}`] = key;
    env[`GIT_CONFIG_VALUE_${i}`] = value;
  });
  return entries.length ? env : {};
}

function urlHash(url: URL): string {
  return createHash("sha256").update(url.href).digest("hex");
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

function lastLine(text: string): string {
  return text.trim().split("\n").at(-1)?.trim() ?? "";
}
