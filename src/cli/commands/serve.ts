import { loadRuntimeConfig } from "../../config/index.ts";
import { checkProfilingListen, createLogger, startProfilingServer } from "../../observability/index.ts";
import { startDaemon } from "../../server/index.ts";

/** `cleanroom serve`: runs the daemon until SIGTERM/SIGINT. Sandboxes outlive it and are reconciled on the next start. */
export async function serve(flags: { listen?: string; gatewayListen?: string; logLevel?: string; warmPool?: string; tlsCert?: string; tlsKey?: string; pprofListen?: string }): Promise<number> {
  // refused before anything starts: a heap snapshot served beyond loopback would hand out the daemon's secrets
  if (flags.pprofListen !== undefined) await checkProfilingListen(flags.pprofListen);
  if (process.getuid?.() !== 0) {
    process.stderr.write("cleanroom serve: the daemon needs root (namespaces, mounts, cgroups, nftables); run it with sudo\n");
    return 1;
  }
  const config = await loadRuntimeConfig();
  const logger = createLogger(flags.logLevel ?? process.env.CLEANROOM_LOG_LEVEL ?? "info", config.observability?.logs?.format ?? "json");
  const warmPool = flags.warmPool ?? process.env.CLEANROOM_WARM_POOL;
  const warmPoolSize = warmPool === undefined ? undefined : Number(warmPool);
  if (warmPoolSize !== undefined && (!Number.isInteger(warmPoolSize) || warmPoolSize < 0 || warmPoolSize > 16)) {
    process.stderr.write(`cleanroom serve: --warm-pool ${warmPool}: expected a whole number from 0 to 16\n`);
    return 2;
  }
  const gatewayListen = flags.gatewayListen ?? process.env.CLEANROOM_GATEWAY_LISTEN;
  if (gatewayListen !== undefined && !/^(\d{1,3}(\.\d{1,3}){3})?:\d{1,5}$/.test(gatewayListen)) {
    process.stderr.write(`cleanroom serve: --gateway-listen ${gatewayListen}: expected :PORT, IPV4:PORT or :0\n`);
    return 2;
  }
  const daemon = await startDaemon({
    ...(flags.listen ? { listen: flags.listen } : {}),
    ...(flags.tlsCert ? { tlsCert: flags.tlsCert } : {}),
    ...(flags.tlsKey ? { tlsKey: flags.tlsKey } : {}),
    ...(gatewayListen ? { gatewayListen } : {}),
    ...(warmPoolSize !== undefined ? { warmPoolSize } : {}),
    config,
    logger,
  });
  const profiling = flags.pprofListen ? await startProfilingServer(flags.pprofListen, logger).catch(async (err: unknown) => {
    await daemon.close();
    throw err;
  }) : undefined;
  process.stderr.write(`cleanroom daemon listening on ${daemon.url}\n`);
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once("SIGTERM", stop);
    process.once("SIGINT", stop);
  });
  logger.info("shutting down");
  await profiling?.close();
  await daemon.close();
  logger.flush();
  return 0;
}
