// Authenticated vs unauthenticated RPC latency: GetSandbox over HTTPS (ConnectRPC, HTTP/2) against two daemons started in
// the same run, identical but for `auth.required` with an OIDC issuer on loopback. Interleaved calls, medians of
// BENCH_CALLS (default 1000). Two authenticated series: the same token every call (what a CLI or SDK sends; the daemon
// keeps verified callers until their token expires) and a fresh token every call (full RS256 verification and policy
// binding each time). Run as root: `npm run bench:auth`.
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { SandboxService } from "../src/api/index.ts";
import { ensureBaseImage, startTestDaemon, type TestDaemon } from "../test/fixtures/daemon.ts";
import { startTestIssuer } from "../test/fixtures/oidc-issuer.ts";
import { freePort } from "../test/fixtures/ports.ts";
import { httpsListener, testCertificates } from "../test/fixtures/tls.ts";

const CALLS = Math.min(Math.max(Number(process.env.BENCH_CALLS ?? 1000), 10), 10_000);
const WARMUP = 50;
const cleanups: (() => unknown)[] = [];
const after = (fn: () => unknown) => void cleanups.push(fn);

const quantile = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * q))]!;

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await fn();
  return performance.now() - start;
}

async function httpsDaemon(certs: ReturnType<typeof testCertificates>, config?: string, token?: string): Promise<TestDaemon> {
  const port = await freePort();
  return startTestDaemon({ after }, {
    listen: httpsListener(certs, port, { args: ["--warm-pool", "0"] }),
    ...(config ? { config } : {}),
    ...(token ? { token } : {}),
  });
}

async function main(): Promise<void> {
  const certs = testCertificates(["127.0.0.1"]);
  after(() => certs.remove());
  const issuer = await startTestIssuer({ audience: "cleanroom", subject: "user:bench" });
  after(() => issuer.close());
  const token = await issuer.sign({ expiresIn: 3000 });
  const config = `auth:
  required: true
  oidc:
    issuers: [{ name: bench, issuer: "${issuer.issuer}", audiences: [cleanroom], jwks_url: "${issuer.jwksUrl}" }]
  policy:
    bindings:
      - name: people
        when: token.subject.startsWith("user:")
        principal: { id: "\${token.subject}" }
        grants: [{ name: own, actions: ["sandbox.*", "execution.*"] }]
`;
  const plain = await httpsDaemon(certs);
  await ensureBaseImage(plain);
  const authed = await httpsDaemon(certs, config, token);
  const plainSandbox = await plain.client.createSandbox({});
  after(() => plainSandbox.terminate().catch(() => undefined));
  const authedSandbox = await authed.client.createSandbox({});
  after(() => authedSandbox.terminate().catch(() => undefined));

  // every series uses the same client: ConnectRPC over one HTTP/2 connection, the header set by an interceptor
  const fresh = await Promise.all(Array.from({ length: Number(process.env.BENCH_TOKEN_POOL ?? CALLS + WARMUP) }, (_, i) => issuer.sign({ expiresIn: 3000, claims: { n: i } })));
  let next = 0;
  const client = (host: string, bearer: () => string | undefined) => {
    const authorize: Interceptor = (call) => (req) => {
      const token = bearer();
      if (token) req.header.set("authorization", `Bearer ${token}`);
      return call(req);
    };
    return createClient(SandboxService, createConnectTransport({ baseUrl: host, httpVersion: "2", nodeOptions: { ca: certs.caPem }, interceptors: [authorize] }));
  };
  const clients = {
    none: { rpc: client(plain.host, () => undefined), id: plainSandbox.id },
    same: { rpc: client(authed.host, () => token), id: authedSandbox.id },
    fresh: { rpc: client(authed.host, () => fresh[next++ % fresh.length]), id: authedSandbox.id },
  };
  const series = { none: [] as number[], same: [] as number[], fresh: [] as number[] };
  for (let i = 0; i < WARMUP + CALLS; i++) {
    for (const name of ["none", "same", "fresh"] as const) {
      const { rpc, id } = clients[name];
      const ms = await timed(() => rpc.getSandbox({ sandboxId: id }));
      if (i >= WARMUP) series[name].push(ms);
    }
  }
  const base = quantile(series.none, 0.5);
  const row = (name: string, xs: number[]) => {
    const p50 = quantile(xs, 0.5);
    return `| ${name} | ${p50.toFixed(3)} | ${quantile(xs, 0.9).toFixed(3)} | ${(p50 - base >= 0 ? "+" : "")}${(p50 - base).toFixed(3)} | ${(p50 / base).toFixed(2)}x |`;
  };
  console.log(`GetSandbox over HTTPS (ConnectRPC, one HTTP/2 connection per series), ${CALLS} interleaved calls per series, same run`);
  console.log("");
  console.log("| series | p50 ms | p90 ms | overhead ms (p50) | ratio |");
  console.log("|---|---|---|---|---|");
  console.log(row("no auth (baseline)", series.none));
  console.log(row("auth.required, same token each call", series.same));
  console.log(row("auth.required, a new token each call", series.fresh));
}

try {
  await main();
} finally {
  for (const fn of cleanups.reverse()) await fn();
}
