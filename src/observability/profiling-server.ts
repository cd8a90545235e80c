// `serve --pprof-listen`: Node's counterpart of Go's net/http/pprof, on loopback only (a heap snapshot holds every
// secret the daemon has in memory). GET /debug/heap-snapshot streams a V8 heap snapshot (open it in Chrome DevTools);
// GET /debug/cpu-profile?seconds=N records the CPU for N seconds (≤ 60) and returns a .cpuprofile.
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { Session } from "node:inspector/promises";
import { getHeapSnapshot } from "node:v8";
import { pipeline } from "node:stream/promises";
import { isLoopbackHost } from "../config/index.ts";
import { CleanroomError } from "../errors/index.ts";
import type { Logger } from "pino";

export const MAX_CPU_PROFILE_SECONDS = 60;
const DEFAULT_CPU_PROFILE_SECONDS = 10;

/** `HOST:PORT` with a loopback host (127.0.0.1, [::1], localhost); anything else is refused. */
export function parseProfilingListen(value: string): { host: string; port: number } {
  const match = /^(\[[0-9a-fA-F:]+\]|[^:\s]+):(\d{1,5})$/.exec(value);
  const port = Number(match?.[2]);
  if (!match || port > 65535) throw new CleanroomError("invalid_argument", `--pprof-listen ${value}: expected HOST:PORT on loopback, e.g. 127.0.0.1:6060`);
  const host = match[1]!.replace(/^\[|\]$/g, "");
  if (!isLoopbackHost(host)) {
    throw new CleanroomError("invalid_argument", `--pprof-listen ${value}: the profiling server listens on loopback only (heap snapshots hold the daemon's secrets); use 127.0.0.1:${port} and an SSH tunnel`);
  }
  return { host, port };
}

export interface ProfilingServer {
  /** where it listens, http://HOST:PORT */
  url: string;
  close(): Promise<void>;
}

export async function startProfilingServer(listen: string, log: Logger): Promise<ProfilingServer> {
  const { host, port } = parseProfilingListen(listen);
  let profiling = false;
  const server = createServer((req, res) => {
    void answer(req, res).catch((err: Error) => {
      log.warn({ err, path: req.url }, "profiling request failed");
      if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" }).end(`${err.message}\n`);
      else res.destroy(err);
    });
  });

  async function answer(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://profiling");
    if (req.method !== "GET") return void res.writeHead(405, { allow: "GET" }).end();
    if (url.pathname === "/debug/heap-snapshot") {
      res.writeHead(200, { "content-type": "application/json", "content-disposition": 'attachment; filename="cleanroom.heapsnapshot"' });
      await pipeline(getHeapSnapshot(), res);
      return;
    }
    if (url.pathname === "/debug/cpu-profile") {
      const seconds = Number(url.searchParams.get("seconds") ?? DEFAULT_CPU_PROFILE_SECONDS);
      if (!Number.isInteger(seconds) || seconds < 1 || seconds > MAX_CPU_PROFILE_SECONDS) {
        return void res.writeHead(400, { "content-type": "text/plain" }).end(`seconds must be a whole number from 1 to ${MAX_CPU_PROFILE_SECONDS}\n`);
      }
      if (profiling) return void res.writeHead(409, { "content-type": "text/plain" }).end("a CPU profile is already being recorded\n");
      profiling = true;
      try {
        const profile = await cpuProfile(seconds * 1000);
        res.writeHead(200, { "content-type": "application/json", "content-disposition": 'attachment; filename="cleanroom.cpuprofile"' }).end(JSON.stringify(profile));
      } finally {
        profiling = false;
      }
      return;
    }
    res.writeHead(404, { "content-type": "text/plain" }).end("GET /debug/heap-snapshot or /debug/cpu-profile?seconds=N\n");
  }

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  const bound = server.address() as { port: number };
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${bound.port}`;
  log.info({ url }, "profiling server listening");
  return {
    url,
    close: () => new Promise((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}

/** The V8 CPU profile of the next `durationMs`. */
async function cpuProfile(durationMs: number): Promise<unknown> {
  const session = new Session();
  session.connect();
  try {
    await session.post("Profiler.enable");
    await session.post("Profiler.start");
    await new Promise((resolve) => setTimeout(resolve, durationMs));
    const { profile } = await session.post("Profiler.stop");
    return profile;
  } finally {
    session.disconnect();
  }
}
