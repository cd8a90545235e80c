// The network tests' world: an "upstream" netns (HTTP on 8080 and 9090, a DNS view of test names) joined to
// the host by a veth pair the test makes, a NetworkManager with its own nft table, interface prefix, pool and
// state dir, and probes that run inside sandbox netns as their workload. Everything is removed in t.after by
// the fixture itself (not through the code under test), even when the test failed.
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import type { TestContext } from "node:test";
import { unwind } from "../fixtures/cleanup.ts";
import { killAndWait, run, startInNetns, startUpstream, tryRun } from "../fixtures/upstream.ts";
import { createNetworkManager, hostResolver, type NetworkEvent, type NetworkManager, type NetworkManagerOptions, type SandboxNetwork, type SandboxNetworkSpec } from "../../src/network/index.ts";

const here = import.meta.dirname;
export { httpPorts, sinkPort } from "../fixtures/upstream.ts";

export interface TestSandbox {
  id: string;
  network: SandboxNetwork;
  /** one request to the probe inside the sandbox's netns */
  probe<T = unknown>(req: Record<string, unknown>): Promise<T>;
  /** A query to the sandbox's DNS policy server, from inside */
  resolve(name: string, type?: "A" | "AAAA" | "TXT", tcp?: boolean): Promise<DnsResult>;
  /** "connected" | "refused" | "timeout" | "unreachable" | "error:…" */
  connect(host: string, port: number, opts?: { timeoutMs?: number; localAddress?: string }): Promise<string>;
  http(host: string, port: number): Promise<{ status?: number; body?: string; error?: string }>;
}

export interface DnsResult {
  rcode?: string;
  answers?: { type: string; data: string; ttl: number }[];
  error?: string;
}

export interface NetWorld {
  net: NetworkManager;
  options: NetworkManagerOptions;
  stateDir: string;
  table: string;
  prefix: string;
  pool: string;
  upstreamNs: string;
  /** the upstream's address (HTTP, DNS) */
  upstream: string;
  /** the host's address on the upstream link */
  upstreamHostSide: string;
  events: NetworkEvent[];
  sandbox(spec?: Omit<SandboxNetworkSpec, "sandboxId"> & { sandboxId?: string }): Promise<TestSandbox>;
  /** a probe in a sandbox's netns that the manager (not the test) set up, e.g. after a restore */
  attach(network: SandboxNetwork): Promise<TestSandbox>;
  waitForEvent(match: (e: NetworkEvent) => boolean, timeoutMs?: number): Promise<NetworkEvent>;
  /** a second manager on the same state, table and prefix: a restarted daemon */
  restartManager(): Promise<NetworkManager>;
  /** runs `fn` in t.after before the world's own cleanup */
  defer(fn: () => unknown): void;
}

export function newSandboxId(): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  return Array.from({ length: 12 }, () => alphabet[Math.floor(Math.random() * alphabet.length)]).join("");
}

/** A prefix ("tq-") and octet no other world (or anything else) on this host uses right now. */
function pickUnique(): { prefix: string; octet: number } {
  const names = [...readdirSync("/sys/class/net"), ...(existsSync("/run/netns") ? readdirSync("/run/netns") : [])];
  const routes = run("ip", ["-4", "route", "show"]);
  for (let i = 0; i < 200; i++) {
    const prefix = `t${"abcdefghijklmnopqrstuvwxyz0123456789"[Math.floor(Math.random() * 36)]}-`;
    const octet = 100 + Math.floor(Math.random() * 150);
    if (names.some((n) => n.startsWith(prefix) || n === `u${prefix[1]}${octet}`)) continue;
    if (routes.includes(`10.250.${octet}.`) || routes.includes(`10.214.${octet}.`)) continue;
    return { prefix, octet };
  }
  throw new Error("no free test prefix/octet");
}

export async function netWorld(t: TestContext, opts: Partial<NetworkManagerOptions> = {}): Promise<NetWorld> {
  const cleanups: (() => unknown)[] = [];
  t.after(() => unwind(cleanups, "network world cleanup failed"));
  const forwardingBefore = readFileSync("/proc/sys/net/ipv4/ip_forward", "utf8").trim();
  const { prefix, octet } = pickUnique();
  const table = `crtest_${prefix[1]}${process.pid}`;
  const pool = `10.214.${octet}.0/24`;
  const upstreamNs = `u${prefix[1]}${octet}-ns`;
  const upstreamIf = `u${prefix[1]}${octet}`;
  const upstream = `10.250.${octet}.2`;
  const upstreamHostSide = `10.250.${octet}.1`;
  const stateDir = await mkdtemp(join(tmpdir(), "cleanroom-net-"));

  // registered first, so it runs last: host-wide state back as it was
  cleanups.push(async () => {
    await rm(stateDir, { recursive: true, force: true });
    const otherManagers = run("nft", ["list", "tables"]).split("\n").some((l) => l.startsWith("table inet ") && !l.endsWith(` ${table}`) && /cleanroom|crtest/.test(l));
    if (forwardingBefore === "0" && !otherManagers) writeFileSync("/proc/sys/net/ipv4/ip_forward", "0");
  });
  cleanups.push(() => {
    tryRun("nft", ["delete", "table", "inet", table]);
    tryRun("ip", ["route", "del", "blackhole", pool]);
    for (const name of readdirSync("/sys/class/net").filter((n) => n.startsWith(prefix))) tryRun("ip", ["link", "del", name]);
    for (const name of (existsSync("/run/netns") ? readdirSync("/run/netns") : []).filter((n) => n.startsWith(prefix))) tryRun("ip", ["netns", "del", name]);
  });

  await startUpstream((fn) => void cleanups.push(fn), {
    ifName: upstreamIf,
    octet,
    records: (address) => ({
      "api.test": [address],
      "deps.test": [address],
      "other.test": [address],
      "meta.test": ["169.254.169.254"],
      "mixed.test": [address, "127.0.0.1", `10.214.${octet}.6`, "169.254.169.254"],
    }),
  });

  const options: NetworkManagerOptions = {
    stateDir,
    pool,
    tableName: table,
    interfacePrefix: prefix,
    gatewayPort: 18170,
    resolver: hostResolver({ servers: [upstream], timeoutMs: 1000, tries: 1 }),
    ...opts,
  };
  const events: NetworkEvent[] = [];
  const managers: NetworkManager[] = [];
  const startManager = async () => {
    const m = await createNetworkManager(options);
    managers.push(m);
    m.events.on("event", (e) => events.push(e));
    return m;
  };
  cleanups.push(async () => {
    for (const m of managers) await m.close();
  });
  const net = await startManager();

  const attach = async (network: SandboxNetwork): Promise<TestSandbox> => {
    const child = await startInNetns(network.netnsPath.split("/").pop()!, [join(here, "probe.ts")], '{"id":0,"result":"ready"}');
    cleanups.push(() => killAndWait(child));
    const pending = new Map<number, (v: unknown) => void>();
    createInterface({ input: child.stdout }).on("line", (line) => {
      const msg = JSON.parse(line) as { id: number; result: unknown };
      pending.get(msg.id)?.(msg.result);
      pending.delete(msg.id);
    });
    let nextId = 1;
    const probe = <T>(req: Record<string, unknown>) =>
      new Promise<T>((resolve) => {
        const id = nextId++;
        pending.set(id, resolve as (v: unknown) => void);
        child.stdin.write(JSON.stringify({ ...req, id }) + "\n");
      });
    return {
      id: network.sandboxId,
      network,
      probe,
      resolve: (name, type = "A", tcp = false) => probe<DnsResult>({ op: "dns", server: network.hostAddress, port: options.dnsPort ?? 53, name, type, tcp }),
      connect: (host, port, o = {}) => probe<string>({ op: "tcp", host, port, ...o }),
      http: (host, port) => probe({ op: "http", host, port }),
    };
  };

  return {
    net,
    options,
    stateDir,
    table,
    prefix,
    pool,
    upstreamNs,
    upstream,
    upstreamHostSide,
    events,
    attach,
    sandbox: async (spec = {}) => {
      const id = spec.sandboxId ?? newSandboxId();
      const network = await net.setUp({ ...spec, sandboxId: id });
      cleanups.push(() => net.tearDown(id).catch(() => {}));
      return attach(network);
    },
    waitForEvent: async (match, timeoutMs = 4000) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = events.find(match);
        if (found) return found;
        if (Date.now() > deadline) throw new Error(`no matching network event within ${timeoutMs} ms; got ${JSON.stringify(events)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    restartManager: startManager,
    defer: (fn) => cleanups.push(fn),
  };
}

/** `ip netns exec <ns> node <args>`; resolves once stdout shows `readyLine`. ip execs node: the pid is node's. */
