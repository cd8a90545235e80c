import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { cpus } from "node:os";
import { createSecureContext } from "node:tls";
import { join } from "node:path";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { Interceptor } from "@connectrpc/connect";
import { AGENT_PROTOCOL_VERSION } from "../agent-protocol/index.ts";
import { createLinuxBackend, gvisorBackendIfInstalled, type BackendName } from "../backends/index.ts";
import { BlockCache, DEFAULT_MINIMUM_OUTPUT_BYTES } from "../cache/index.ts";
import { hostPaths, isLoopbackHost, loadRuntimeConfig, packageRoot, sandboxIdRange, type HostPaths, type RuntimeConfig } from "../config/index.ts";
import { createAuthorizer, type Authorizer } from "../auth/index.ts";
import { CleanroomError } from "../errors/index.ts";
import { ImageStore } from "../image/index.ts";
import { startGateway, type Gateway, type GatewaySettings } from "../gateway/index.ts";
import { createNetworkManager, hostResolver, type HostResolver, type NetworkManager } from "../network/index.ts";
import { startTelemetry, type Logger, type Telemetry } from "../observability/index.ts";
import { SandboxSupervisor } from "../sandbox/index.ts";
import type { DaemonContext } from "./daemon-context.ts";
import { authorizationInterceptor, daemonResources } from "./authorization.ts";
import { toConnectError } from "./errors.ts";
import { listenHttp, parseListenAddress, type ListenAddress, type ListenerTls } from "./listen.ts";
import { registerRoutes } from "./routes.ts";
import { traceInterceptor } from "./trace-context.ts";

export interface DaemonOptions {
  /** `unix:///path`, `http://127.0.0.1:port` or `https://host:port`; default: the root socket */
  listen?: string;
  /** PEM files of an https:// listener */
  tlsCert?: string;
  tlsKey?: string;
  /** `--gateway-listen`: ":8170" (default), "IPV4:PORT", ":0" for an ephemeral port */
  gatewayListen?: string;
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
  // a listener that cannot work is refused before anything starts
  const listenUrl = opts.listen ?? `unix://${paths.socketPath}`;
  const address = parseListenAddress(listenUrl);
  const config = opts.config ?? (await loadRuntimeConfig());
  const tls = await listenerTls(address, opts, config);
  const authorizer = await listenerAuthorizer(address, config, log);
  // what is started is released again if a later step fails: a half-started daemon would hold its ports and never exit
  const opened: (() => Promise<unknown>)[] = [];
  const undo = async (err: unknown): Promise<never> => {
    for (const close of opened.reverse()) await close().catch((closeErr: unknown) => log.error({ err: closeErr }, "cleanup after a failed start failed"));
    throw err;
  };
  const telemetry = await telemetryOf(config, log);
  if (telemetry) opened.push(() => telemetry.shutdown());
  const backendOptions = { stateDir: paths.stateDir, runDir: paths.runDir, agentPath: paths.agentPath, idRange: sandboxIdRange, logger: log };
  const images = new ImageStore({ root: paths.imageDir, idRange: sandboxIdRange, logger: log });
  const resolver = upstreamResolver();
  // the gateway starts first: the network rules admit its port; it asks the supervisor who is calling
  let supervisorRef: SandboxSupervisor | undefined;
  const gateway = await startGateway({
    listen: opts.gatewayListen ?? ":8170",
    stateDir: join(paths.stateDir, "gateway"),
    callers: (remote, local) => supervisorRef?.gatewayCallerAt(remote, local),
    resolver,
    settings: gatewaySettingsOf(config),
    onAudit: (event) => {
      supervisorRef?.recordGatewayAudit(event);
      telemetry?.gatewayRequest(event);
    },
    logger: log,
  }).catch(undo);
  opened.push(() => gateway.close());
  const network = await startNetwork(paths, log, resolver, gateway);
  const closeNetwork = async () => network?.close();
  opened.push(closeNetwork);
  const defaultBackend: BackendName = config.default_backend ?? "linux";
  const backendConfig = config.backends?.[defaultBackend] ?? {};
  const blockCache = await BlockCache.open(join(paths.stateDir, "caches", "blocks"), log).catch(undo);
  const gvisor = await gvisorBackendIfInstalled(backendOptions).catch(undo);
  const supervisor = await SandboxSupervisor.open({
    stateDir: paths.stateDir,
    images,
    backends: { linux: createLinuxBackend(backendOptions), ...gvisor },
    defaultBackend,
    defaultResources: {
      vcpus: backendConfig.vcpus ?? Math.max(1, Math.min(2, cpus().length)),
      memoryMiB: backendConfig.memory_mib ?? 2048,
      pidsLimit: backendConfig.pids_limit ?? 1024,
    },
    defaultLaunchSeconds: backendConfig.launch_seconds ?? 30,
    warmPoolSize: opts.warmPoolSize ?? config.sandbox_lifecycle?.warm_pool_size ?? 1,
    idleSuspendAfterSeconds: config.sandbox_lifecycle?.idle_suspend_after_seconds ?? 0,
    wakeTimeoutSeconds: config.sandbox_lifecycle?.wake_timeout_seconds ?? 30,
    ...(network ? { network } : {}),
    gateway,
    repositories: gateway.repositories,
    blockCache,
    idRange: sandboxIdRange,
    minimumOutputBytes: backendConfig.minimum_cache_output_volume_bytes ?? DEFAULT_MINIMUM_OUTPUT_BYTES,
    ...(telemetry ? { observer: telemetry } : {}),
    logger: log,
  }).catch(undo);
  // from here the supervisor owns the network: its close closes it
  opened.splice(opened.indexOf(closeNetwork), 1, () => supervisor.close());
  supervisorRef = supervisor;
  const context: DaemonContext = { supervisor, images, gateway, blockCache, stateDir: paths.stateDir, defaultBackend, backendOptions, version, agentProtocolVersion: AGENT_PROTOCOL_VERSION, listenUrl, authRequired: authorizer !== undefined, ...(config.observability?.traces?.url_template ? { traceUrlTemplate: config.observability.traces.url_template } : {}) };
  const handler = connectNodeAdapter({
    routes: (router) => registerRoutes(router, context),
    // the trace interceptor sits outside authorization so that refused calls are logged with their reason code too
    interceptors: [reasonCodeInterceptor(log), traceInterceptor(log), ...(authorizer ? [authorizationInterceptor(authorizer, daemonResources(supervisor, defaultBackend))] : [])],
  });
  const listening = await listenHttp(address, handler, tls).catch(undo);
  log.info({ url: listening.url, gateway_port: gateway.port, state_dir: paths.stateDir, version }, "cleanroom daemon listening");
  return {
    url: listening.url,
    async close() {
      await listening.close();
      await gateway.close();
      await supervisor.close();
      await telemetry?.shutdown();
    },
  };
}

/** OTLP export when `observability.enabled` (the OpenTelemetry SDK is loaded only then). */
async function telemetryOf(config: RuntimeConfig, log: Logger): Promise<Telemetry | undefined> {
  const o = config.observability;
  if (!o?.enabled || !o.otlp?.endpoint) return undefined;
  return startTelemetry({
    endpoint: o.otlp.endpoint,
    protocol: o.otlp.protocol ?? "http/protobuf",
    headers: o.otlp.headers ?? {},
    sampling: o.traces?.sampling ?? 1,
    serviceVersion: version,
  }, log);
}

/**
 * Per-sandbox networking (netns, nftables, DNS policy). Without it the daemon still runs sandboxes, with
 * loopback only, and refuses policies with allowlists (fail closed). CLEANROOM_DNS_SERVERS (ip[:port],…)
 * replaces the host's resolvers for allowed names, e.g. to point tests at a DNS view of their own.
 * A second daemon on one host needs its own CLEANROOM_NETWORK_TABLE, CLEANROOM_NETWORK_PREFIX ("xy-")
 * and CLEANROOM_NETWORK_POOL, or the two would reconcile each other's sandboxes away.
 */
async function startNetwork(paths: HostPaths, log: Logger, resolver: HostResolver, gateway: Gateway): Promise<NetworkManager | undefined> {
  const env = process.env;
  try {
    return await createNetworkManager({
      stateDir: join(paths.stateDir, "network"),
      resolver,
      gatewayPort: gateway.port,
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

/** How the host resolves allowed names, for the DNS policy servers and the gateway alike. */
function upstreamResolver(): HostResolver {
  const servers = process.env.CLEANROOM_DNS_SERVERS?.split(",").map((s) => s.trim()).filter(Boolean);
  return servers?.length ? hostResolver({ servers }) : hostResolver();
}

/** Runtime config `gateway:` in the gateway's terms. */
function gatewaySettingsOf(config: RuntimeConfig): GatewaySettings {
  const g = config.gateway ?? {};
  const app = g.credentials?.github_app;
  const env = process.env;
  return {
    ...(g.oci?.registries ? { ociRegistries: g.oci.registries } : {}),
    ...(g.git?.cache_hosts ? { gitCacheHosts: g.git.cache_hosts } : {}),
    ...(g.npm?.registry ? { npmRegistry: g.npm.registry } : {}),
    ...(g.go?.proxy ? { goProxy: g.go.proxy } : {}),
    ...(g.rubygems?.host ? { rubygemsHost: g.rubygems.host } : {}),
    ...(g.upstream?.allow_private_cidrs ? { allowPrivateCidrs: g.upstream.allow_private_cidrs } : {}),
    ...(g.upstream?.ca_file ? { upstreamCaFile: g.upstream.ca_file } : {}),
    ...(g.credentials?.env ? { credentialEnv: g.credentials.env } : {}),
    ...(g.max_object_bytes ? { maxObjectBytes: g.max_object_bytes } : {}),
    ...(app
      ? { githubApp: { appId: app.app_id, installationId: app.installation_id, privateKeyFile: app.private_key_file, repoPrefixes: app.repo_prefixes } }
      : env.CLEANROOM_GITHUB_APP_ID && env.CLEANROOM_GITHUB_APP_INSTALLATION_ID && env.CLEANROOM_GITHUB_APP_PRIVATE_KEY_FILE
        ? {
            githubApp: {
              appId: env.CLEANROOM_GITHUB_APP_ID,
              installationId: env.CLEANROOM_GITHUB_APP_INSTALLATION_ID,
              privateKeyFile: env.CLEANROOM_GITHUB_APP_PRIVATE_KEY_FILE,
              repoPrefixes: (env.CLEANROOM_GITHUB_APP_REPO_PREFIXES ?? "").split(",").map((p) => p.trim()).filter(Boolean),
            },
          }
        : {}),
  };
}

/**
 * Who checks callers on this listener. A unix socket is the host's own users (file permissions decide), and a
 * loopback listener without `auth.required` is treated the same; otherwise every call needs a verified token.
 */
async function listenerAuthorizer(address: ListenAddress, config: RuntimeConfig, log: Logger): Promise<Authorizer | undefined> {
  const auth = config.auth;
  if (!auth?.required) return undefined;
  if (address.kind === "unix") {
    log.info("auth.required applies to TCP listeners; callers on the unix socket are trusted local users");
    return undefined;
  }
  // the config schema makes auth.required carry issuers and a policy (policy_file is read into policy)
  if (!auth.oidc || !auth.policy) throw new CleanroomError("invalid_argument", "auth.required needs auth.oidc.issuers and auth.policy (or auth.policy_file)");
  return createAuthorizer({ issuers: auth.oidc.issuers, policy: auth.policy });
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

/**
 * The key and certificate of an https:// listener. A shared server (any address beyond loopback) needs HTTPS and
 * `auth.required: true`: plain http beyond loopback is already refused by the address parser.
 */
async function listenerTls(address: ListenAddress, opts: DaemonOptions, config: RuntimeConfig): Promise<ListenerTls | undefined> {
  const tlsFlags = opts.tlsCert !== undefined || opts.tlsKey !== undefined;
  if (address.kind === "unix" || !address.tls) {
    if (tlsFlags) throw new CleanroomError("invalid_argument", "--tls-cert and --tls-key go with an https:// --listen address");
    return undefined;
  }
  if (!isLoopbackHost(address.host) && !config.auth?.required) {
    throw new CleanroomError("auth_insecure_transport", `--listen https://${address.host}: a listener beyond loopback needs auth.required: true with OIDC issuers and a policy in the runtime config; or listen on 127.0.0.1 or a unix socket`);
  }
  if (!opts.tlsCert || !opts.tlsKey) throw new CleanroomError("invalid_argument", "an https:// listener needs both --tls-cert and --tls-key (PEM files)");
  const read = (path: string, what: string) => readFile(path).catch((err: Error) => {
    throw new CleanroomError("invalid_argument", `cannot read the TLS ${what} ${path}: ${err.message}`);
  });
  const [cert, key] = await Promise.all([read(opts.tlsCert, "certificate"), read(opts.tlsKey, "key")]);
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    throw new CleanroomError("invalid_argument", `--tls-cert ${opts.tlsCert} and --tls-key ${opts.tlsKey} are not a PEM certificate and its private key: ${(err as Error).message}`);
  }
  return { cert, key };
}
