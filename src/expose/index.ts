// Exposure: reaching services inside a sandbox from the machine that asked. Raw TCP on 127.0.0.1 ports, and HTTPS
// under *.cleanroom.localhost with certificates from a local CA. It runs in the client (the CLI process), not the
// daemon: the browser is on the client's machine, and exposures live only as long as the process that asked.
// Everything rides sandbox port dials; the HTTPS half (and its X.509 library) loads only when it is used.
import type { PortDialer } from "./https-proxy.ts";
import type { HttpsRoute } from "./routes.ts";
import { startTcpForwarding, type PortMapping } from "./tcp-forward.ts";

export { parsePortMapping, type PortMapping } from "./tcp-forward.ts";
export { checkRoutes, exposeHttpsPolicyOf, matchRoute, parseHttpsExposure, routesFromPolicy, routeUrl, type ExposeHttpsPolicy, type HttpsRoute } from "./routes.ts";
export type { PortDialer } from "./https-proxy.ts";

export interface ExposureRequest {
  tcp: PortMapping[];
  https: HttpsRoute[];
}

export interface Exposure {
  /** one line per listener or route, for the user */
  describe(): string[];
  close(): Promise<void>;
}

export interface ExposureOptions {
  /** names the sandbox in lines and warnings */
  label: string;
  warn: (line: string) => void;
  /** 127.0.0.1 port of the HTTPS front (default 8143, or a free one when taken) */
  httpsPort?: number;
  /** where the CA lives (default exposureDir()) */
  caDir?: string;
}

/** Starts every listener of `request`; if one cannot start, the others are closed again. */
export async function startExposure(dial: PortDialer, request: ExposureRequest, opts: ExposureOptions): Promise<Exposure> {
  const tcp = request.tcp.length ? await startTcpForwarding(dial, request.tcp, opts) : undefined;
  try {
    const https = request.https.length ? await startHttps(dial, request.https, opts) : undefined;
    return {
      describe: () => [...(tcp?.describe() ?? []), ...(https?.urls() ?? [])],
      close: async () => {
        await Promise.all([tcp?.close(), https?.close()]);
      },
    };
  } catch (err) {
    await tcp?.close();
    throw err;
  }
}

async function startHttps(dial: PortDialer, routes: HttpsRoute[], opts: ExposureOptions) {
  const [{ ExposureCa }, { startHttpsExposure }] = await Promise.all([import("./local-ca.ts"), import("./https-proxy.ts")]);
  const ca = await ExposureCa.loadOrCreate(opts.caDir);
  return startHttpsExposure({ routes, dial, ca, warn: opts.warn, ...(opts.httpsPort !== undefined ? { port: opts.httpsPort } : {}) });
}

/** The exposure CA of this user (made on first use): its certificate is what clients trust. */
export async function loadExposureCa(dir?: string): Promise<{ certPem: string; certPath: string }> {
  const { ExposureCa } = await import("./local-ca.ts");
  return ExposureCa.loadOrCreate(dir);
}

export async function installSystemTrust(certPath: string): Promise<string> {
  return (await import("./trust-store.ts")).installSystemTrust(certPath);
}

export async function uninstallSystemTrust(): Promise<string | undefined> {
  return (await import("./trust-store.ts")).uninstallSystemTrust();
}
