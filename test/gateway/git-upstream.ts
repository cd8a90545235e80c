// A Git host for gateway tests: an HTTPS server on 127.0.0.1 answering smart HTTP with `git http-backend` over
// bare repositories holding real commits. It records every request it gets, and can demand an Authorization.
import { execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type { TestCertificates } from "../fixtures/tls.ts";

const run = promisify(execFile);

export interface UpstreamGitRequest {
  method: string;
  /** path and query */
  url: string;
  authorization: string | undefined;
}

export interface GitUpstream {
  port: number;
  /** "<name>:<port>": how policy rules, gateway paths and clone URLs name it */
  authority: string;
  requests: UpstreamGitRequest[];
  /** commits a change to `main` of `repo` and returns the commit id */
  commit(repo: string, message: string): Promise<string>;
  /** commit ids on `main` of `repo`, newest first */
  log(repo: string): Promise<string[]>;
  /** stops answering (idempotent); the repositories stay */
  stop(): Promise<void>;
}

export interface GitUpstreamOptions {
  certs: TestCertificates;
  /** the name its certificate was made for */
  name: string;
  /** repository paths such as "org/repo.git"; each gets one initial commit */
  repos: string[];
  /** when set, requests without exactly this Authorization header get 401 */
  requireAuthorization?: string;
}

/** Starts the Git host; `defer` receives its cleanup. */
export async function startGitUpstream(defer: (fn: () => unknown) => void, opts: GitUpstreamOptions): Promise<GitUpstream> {
  const root = mkdtempSync(join(tmpdir(), "cleanroom-git-upstream-"));
  defer(() => rmSync(root, { recursive: true, force: true }));
  const env = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: root,
    GIT_CONFIG_NOSYSTEM: "1",
    GIT_CONFIG_GLOBAL: "/dev/null",
    GIT_AUTHOR_NAME: "Upstream Author",
    GIT_AUTHOR_EMAIL: "author@git.test",
    GIT_COMMITTER_NAME: "Upstream Author",
    GIT_COMMITTER_EMAIL: "author@git.test",
  };
  const git = async (args: string[]) => (await run("git", args, { env, timeout: 15_000 })).stdout.trim();
  const bare = (repo: string) => join(root, "repos", repo);
  const work = (repo: string) => join(root, "work", repo);

  async function commit(repo: string, message: string): Promise<string> {
    writeFileSync(join(work(repo), "CHANGES"), `${message}\n`, { flag: "a" });
    await git(["-C", work(repo), "add", "CHANGES"]);
    await git(["-C", work(repo), "commit", "-q", "-m", message]);
    await git(["-C", work(repo), "push", "-q", bare(repo), "HEAD:refs/heads/main"]);
    return git(["-C", work(repo), "rev-parse", "HEAD"]);
  }

  for (const repo of opts.repos) {
    await git(["init", "-q", "--bare", "-b", "main", bare(repo)]);
    await git(["init", "-q", "-b", "main", work(repo)]);
    await commit(repo, `first commit of ${repo}`);
  }

  const requests: UpstreamGitRequest[] = [];
  const server = createServer({ key: opts.certs.key, cert: opts.certs.cert }, (req, res) => {
    requests.push({ method: req.method ?? "", url: req.url ?? "", authorization: req.headers.authorization });
    if (opts.requireAuthorization !== undefined && req.headers.authorization !== opts.requireAuthorization) {
      req.resume();
      return void res.writeHead(401, { "www-authenticate": 'Basic realm="git.test"' }).end();
    }
    const url = new URL(req.url ?? "/", "https://upstream.invalid");
    const backend = spawn("git", ["http-backend"], {
      env: {
        ...env,
        GIT_PROJECT_ROOT: join(root, "repos"),
        GIT_HTTP_EXPORT_ALL: "1",
        PATH_INFO: decodeURIComponent(url.pathname),
        QUERY_STRING: url.search.slice(1),
        REQUEST_METHOD: req.method ?? "GET",
        CONTENT_TYPE: req.headers["content-type"] ?? "",
        ...(req.headers["content-length"] ? { CONTENT_LENGTH: req.headers["content-length"] } : {}),
        HTTP_CONTENT_ENCODING: req.headers["content-encoding"] ?? "",
        GIT_PROTOCOL: String(req.headers["git-protocol"] ?? ""),
      },
      stdio: ["pipe", "pipe", "ignore"],
    });
    req.pipe(backend.stdin);
    backend.stdin.on("error", () => undefined);
    const out: Buffer[] = [];
    backend.stdout.on("data", (c: Buffer) => out.push(c));
    backend.on("close", () => {
      const all = Buffer.concat(out);
      const end = all.indexOf("\r\n\r\n");
      const headers: Record<string, string> = {};
      let status = 200;
      for (const line of all.subarray(0, Math.max(end, 0)).toString("latin1").split("\r\n")) {
        const [name = "", ...value] = line.split(":");
        if (name.toLowerCase() === "status") status = Number.parseInt(value.join(":").trim(), 10);
        else if (name) headers[name] = value.join(":").trim();
      }
      res.writeHead(end === -1 ? 500 : status, headers).end(end === -1 ? undefined : all.subarray(end + 4));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }));
  defer(stop);
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    authority: `${opts.name}:${port}`,
    requests,
    commit,
    log: async (repo) => (await git(["--git-dir", bare(repo), "log", "--format=%H", "main"])).split("\n"),
    stop,
  };
}
