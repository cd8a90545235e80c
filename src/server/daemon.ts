import { readFileSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import type { Server } from "node:http";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { Interceptor } from "@connectrpc/connect";
import { AGENT_PROTOCOL_VERSION } from "../agent-protocol/index.ts";
import { createLinuxBackend, type BackendName } from "../backends/index.ts";
import { hostPaths, loadRuntimeConfig, packageRoot, sandboxIdRange, type HostPaths, type RuntimeConfig } from "../config/index.ts";
import { ImageStore } from "../image/index.ts";
import { createNetworkManager, hostResolver, type NetworkManager } from "../network/index.ts";
import type { Logger } from "../observability/index.ts";
import { SandboxSupervisor } from "../sandbox/index.ts";
import type { DaemonContext } from "./daemon-context.ts";
import { toConnectError } from "./errors.ts";
import { listenHttp, parseListenAddress } from "./listen.ts";
import { registerRoutes } from "./routes.ts";

export interface DaemonOptions {
  /** `unix:///path` or `http://127.0.0.1:port`; default: the root socket */
  listen?: string;
  paths?: HostPaths;
  /** spare sandboxes kept ready for `exec` in a new sandbox (default: config, else 1; 0 disables) */
  warmPoolSize?: number;
  /** default: read from runtimeConfigPath() */
  config?: RuntimeConfig;
  logger: Logger;
}

export interface RunningDaemon {
  url: string;
  close(): Promise<void>;
}

export const version: string = (JSON.parse(readFileSync(join(packageRoot, "package.json"), "utf8")) as { version: string }).version;

/** Starts `cleanroom serve`: opens state, reconciles with the host, and serves the API. */
export async function startDaemon(opts: DaemonOptions): Promise<RunningDaemon> {
  const paths = opts.paths ?? hostPaths();
  const log = opts.logger;
  const backendOptions = { stateDir: paths.stateDir, runDir: paths.runDir, agentPath: paths.agentPath, idRange: sandboxIdRange, logger: log };
  const images = new ImageStore({ root: paths.imageDir, idRange: sandboxIdRange, logger: log });
  const config = opts.config ?? (await loadRuntimeConfig());
  const network = await startNetwork(paths, log);
  const defaultBackend: BackendName = config.default_backend ?? "linux";
  const backendConfig = config.backends?.[defaultBackend] ?? {};
  const supervisor = await SandboxSupervisor.open({
    stateDir: paths.stateDir,
    images,
    backends: { linux: createLinuxBackend(backendOptions) },
    defaultBackend,
    defaultResources: {
      vcpus: backendConfig.vcpus ?? Math.max(1, Math.min(2, cpus().length)),
      memoryMiB: backendConfig.memory_mib ?? 2048,
      pidsLimit: backendConfig.pids_limit ?? 1024,
    },
    defaultLaunchSeconds: backendConfig.launch_seconds ?? 30,
    warmPoolSize: opts.warmPoolSize ?? config.sandbox_lifecycle?.warm_pool_size ?? 1,
    ...(network ? { network } : {}),
    logger: log,
  });
  const context: DaemonContext = { supervisor, images, defaultBackend, backendOptions, version, agentProtocolVersion: AGENT_PROTOCOL_VERSION };
  const handler = connectNodeAdapter({
    routes: (router) => registerRoutes(router, context),
    interceptors: [reasonCodeInterceptor(log)],
  });
  const listening = await listenHttp(parseListenAddress(opts.listen ?? `unix://${paths.socketPath}`), handler);
  log.info({ url: listening.url, state_dir: paths.stateDir, version }, "cleanroom daemon listening");
  return {
    url: listening.url,
    async close() {
      await closeServer(listening.server);
      await supervisor.close();
    },
  };
}

/**
 * Per-sandbox networking (netns, nftables, DNS policy). Without it the daemon still runs sandboxes, with
 * loopback only, and refuses policies with allowlists (fail closed). CLEANROOM_DNS_SERVERS (ip[:port],…)
 * replaces the host's resolvers for allowed names, e.g. to point tests at a DNS view of their own.
 * A second daemon on one host needs its own CLEANROOM_NETWORK_TABLE, CLEANROOM_NETWORK_PREFIX ("xy-")
 * and CLEANROOM_NETWORK_POOL, or the two would reconcile each other's sandboxes away.
 */
async function startNetwork(paths: HostPaths, log: Logger): Promise<NetworkManager | undefined> {
  const env = process.env;
  const servers = env.CLEANROOM_DNS_SERVERS?.split(",").map((s) => s.trim()).filter(Boolean);
  try {
    return await createNetworkManager({
      stateDir: join(paths.stateDir, "network"),
      ...(servers?.length ? { resolver: hostResolver({ servers }) } : {}),
      ...(env.CLEANROOM_NETWORK_TABLE ? { tableName: env.CLEANROOM_NETWORK_TABLE } : {}),
      ...(env.CLEANROOM_NETWORK_PREFIX ? { interfacePrefix: env.CLEANROOM_NETWORK_PREFIX } : {}),
      ...(env.CLEANROOM_NETWORK_POOL ? { pool: env.CLEANROOM_NETWORK_POOL } : {}),
      logger: log,
    });
  } catch (err) {
    log.error({ err }, "sandbox networking is unavailable: sandboxes get loopback only and allowlist policies are refused");
    return undefined;
  }
}

/** Maps every error leaving a handler, unary or mid-stream, to a ConnectError with a reason code. */
function reasonCodeInterceptor(log: Logger): Interceptor {
  return (next) => async (req) => {
    try {
      const res = await next(req);
      if (!res.stream) return res;
      const source = res.message;
      async function* mapped() {
        try {
          yield* source;
        } catch (err) {
          throw toConnectError(err, log);
        }
      }
      return { ...res, message: mapped() };
    } catch (err) {
      throw toConnectError(err, log);
    }
  };
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
