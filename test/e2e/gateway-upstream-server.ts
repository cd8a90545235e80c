// The HTTPS upstream of the gateway end-to-end tests, run inside the test's upstream netns on :443.
// Hosts (by the Host header) are served from `<root>/<host>/`: "git" hosts through `git http-backend` over bare
// repositories there, the others as static files (a directory answers with its index.json). Every request is
// appended to `<root>/requests.jsonl` with its Authorization header, so tests can see what reached the upstream.
// With `httpPort`, the same trees are also served over plain HTTP (a baseline for benchmarks).
// Argument: JSON { address, port, httpPort?, root, key, cert, gitHosts: string[] }. Prints "ready".
import { spawn } from "node:child_process";
import { appendFileSync, createReadStream, statSync } from "node:fs";
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer } from "node:https";
import { join, normalize } from "node:path";

interface Config {
  address: string;
  port: number;
  httpPort?: number;
  root: string;
  key: string;
  cert: string;
  gitHosts: string[];
}

const config = JSON.parse(process.argv[2] ?? "{}") as Config;

function serve(req: IncomingMessage, res: ServerResponse): void {
  const host = (req.headers.host ?? "").replace(/:\d+$/, "");
  const url = new URL(req.url ?? "/", "https://upstream");
  appendFileSync(join(config.root, "requests.jsonl"), `${JSON.stringify({ host, method: req.method, path: url.pathname, authorization: req.headers.authorization ?? null })}\n`);
  if (config.gitHosts.includes(host)) return gitBackend(host, url, req, res);
  const path = normalize(join(config.root, host, decodeURIComponent(url.pathname)));
  if (!path.startsWith(join(config.root, host))) return void res.writeHead(400).end();
  let file = path;
  try {
    if (statSync(file).isDirectory()) file = join(file, "index.json");
    const size = statSync(file).size;
    res.writeHead(200, { "content-length": size, "content-type": file.endsWith(".json") ? "application/json" : "application/octet-stream" });
    createReadStream(file).pipe(res);
  } catch {
    res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
  }
}

function gitBackend(host: string, url: URL, req: IncomingMessage, res: ServerResponse): void {
  const child = spawn("git", ["http-backend"], {
    env: {
      PATH: process.env.PATH,
      GIT_PROJECT_ROOT: join(config.root, host),
      GIT_HTTP_EXPORT_ALL: "1",
      PATH_INFO: url.pathname,
      QUERY_STRING: url.search.slice(1),
      REQUEST_METHOD: req.method ?? "GET",
      CONTENT_TYPE: req.headers["content-type"] ?? "",
      ...(req.headers["content-encoding"] ? { HTTP_CONTENT_ENCODING: req.headers["content-encoding"] } : {}),
      ...(req.headers["git-protocol"] ? { GIT_PROTOCOL: String(req.headers["git-protocol"]) } : {}),
      REMOTE_ADDR: req.socket.remoteAddress ?? "",
    },
    stdio: ["pipe", "pipe", "inherit"],
  });
  req.pipe(child.stdin);
  let head = Buffer.alloc(0);
  let headersDone = false;
  child.stdout.on("data", (chunk: Buffer) => {
    if (headersDone) return void res.write(chunk);
    head = Buffer.concat([head, chunk]);
    const end = head.indexOf("\r\n\r\n");
    if (end === -1) return;
    headersDone = true;
    let status = 200;
    for (const line of head.subarray(0, end).toString().split("\r\n")) {
      const [name, ...value] = line.split(":");
      if (!name) continue;
      if (name.toLowerCase() === "status") status = Number.parseInt(value.join(":").trim(), 10);
      else res.setHeader(name, value.join(":").trim());
    }
    res.writeHead(status);
    res.write(head.subarray(end + 4));
  });
  child.stdout.on("end", () => res.end());
}

const listening: import("node:net").Server[] = [createServer({ key: config.key, cert: config.cert }, serve).listen(config.port, config.address)];
if (config.httpPort) listening.push(createHttpServer(serve).listen(config.httpPort, config.address));
await Promise.all(listening.map((server) => new Promise((resolve) => server.once("listening", resolve))));
process.stdout.write("ready\n");
