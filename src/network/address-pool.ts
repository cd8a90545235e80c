import { mkdir, open, readFile, rename } from "node:fs/promises";
import { dirname } from "node:path";
import { cidrSize, formatIpv4, parseCidr, parseIpv4, type Cidr } from "./ipv4.ts";
import { sandboxIdPattern } from "./names.ts";

/** One /30 of the pool: network .0, host side .1, sandbox side .2, broadcast .3. */
export interface AddressPair {
  network: string;
  hostAddress: string;
  sandboxAddress: string;
}

interface LeaseFile {
  version: 1;
  /** next block to try: allocation walks the pool round-robin so a just-freed pair (and any conntrack state of it) is reused last */
  cursor: number;
  /** sandbox id → network address of its /30 */
  leases: Record<string, string>;
}

const maxLeaseFileBytes = 16 * 1024 * 1024;

/**
 * /30 blocks of a pool, leased to sandbox ids and persisted in one JSON file (written to a temp file,
 * fsynced, renamed) so a restarted daemon knows what is taken. A JSON file rather than the daemon's
 * SQLite keeps network/ free of the store; reconcile() frees leases of sandboxes that no longer exist.
 */
export class AddressPool {
  readonly pool: Cidr;
  private readonly file: string;
  private state: LeaseFile;
  private writes: Promise<void> = Promise.resolve();

  private constructor(file: string, pool: Cidr, state: LeaseFile) {
    this.file = file;
    this.pool = pool;
    this.state = state;
  }

  /** Loads the lease file (a missing one is empty). Leases outside a changed pool are kept until released. */
  static async open(file: string, pool: string): Promise<AddressPool> {
    const cidr = parseCidr(pool);
    if (cidr.prefixLength > 30) throw new Error(`address pool ${pool} is smaller than one /30`);
    let state: LeaseFile = { version: 1, cursor: 0, leases: {} };
    const text = await readFile(file, "utf8").catch((err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT") return undefined;
      throw err;
    });
    if (text !== undefined) state = parseLeaseFile(text, file);
    return new AddressPool(file, cidr, state);
  }

  /** The pair leased to `sandboxId`, reserving the next free one if it has none (idempotent). */
  async reserve(sandboxId: string): Promise<AddressPair> {
    if (!sandboxIdPattern.test(sandboxId)) throw new Error(`sandbox id ${JSON.stringify(sandboxId)} is not 12 characters of [a-z0-9]`);
    const existing = this.lookup(sandboxId);
    if (existing) return existing;
    const blocks = cidrSize(this.pool) / 4;
    const taken = new Set(Object.values(this.state.leases));
    for (let i = 0; i < blocks; i++) {
      const index = (this.state.cursor + i) % blocks;
      const network = formatIpv4(this.pool.base + index * 4);
      if (taken.has(network)) continue;
      this.state = { ...this.state, cursor: (index + 1) % blocks, leases: { ...this.state.leases, [sandboxId]: network } };
      await this.persist();
      return pairOf(network);
    }
    throw new Error(`address pool ${this.describe()} is exhausted (${blocks} sandboxes)`);
  }

  /** Frees the pair of `sandboxId`; a no-op when it has none. */
  async release(sandboxId: string): Promise<void> {
    if (!(sandboxId in this.state.leases)) return;
    const leases = { ...this.state.leases };
    delete leases[sandboxId];
    this.state = { ...this.state, leases };
    await this.persist();
  }

  lookup(sandboxId: string): AddressPair | undefined {
    const network = Object.hasOwn(this.state.leases, sandboxId) ? this.state.leases[sandboxId] : undefined;
    return network === undefined ? undefined : pairOf(network);
  }

  /** Ids holding a lease. */
  sandboxIds(): string[] {
    return Object.keys(this.state.leases).sort();
  }

  /** The lease holder of a host or sandbox address, if any. */
  holderOf(address: string): string | undefined {
    const n = parseIpv4(address);
    const network = formatIpv4(n - (n % 4));
    return Object.entries(this.state.leases).find(([, net]) => net === network)?.[0];
  }

  describe(): string {
    return `${formatIpv4(this.pool.base)}/${this.pool.prefixLength}`;
  }

  private persist(): Promise<void> {
    const snapshot = JSON.stringify(this.state, null, 1) + "\n";
    const run = this.writes.then(() => writeAtomically(this.file, snapshot));
    this.writes = run.catch(() => {});
    return run;
  }
}

function pairOf(network: string): AddressPair {
  const n = parseIpv4(network);
  return { network, hostAddress: formatIpv4(n + 1), sandboxAddress: formatIpv4(n + 2) };
}

function parseLeaseFile(text: string, file: string): LeaseFile {
  if (text.length > maxLeaseFileBytes) throw new Error(`${file} is larger than ${maxLeaseFileBytes} bytes`);
  const bad = (why: string) => new Error(`${file}: ${why}; move it away to start with an empty pool (reconcile then removes orphans)`);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw bad(`not JSON (${(err as Error).message})`);
  }
  if (typeof raw !== "object" || raw === null) throw bad("not an object");
  const { version, cursor, leases } = raw as Record<string, unknown>;
  if (version !== 1) throw bad(`unknown version ${JSON.stringify(version)}`);
  if (!Number.isInteger(cursor) || (cursor as number) < 0) throw bad("cursor is not a non-negative integer");
  if (typeof leases !== "object" || leases === null) throw bad("leases is not an object");
  const out: Record<string, string> = {};
  for (const [id, net] of Object.entries(leases)) {
    if (!sandboxIdPattern.test(id) || typeof net !== "string") throw bad(`lease ${JSON.stringify(id)} is malformed`);
    const n = parseIpv4(net);
    if (n % 4 !== 0) throw bad(`lease ${id} → ${net} is not the start of a /30`);
    out[id] = net;
  }
  return { version: 1, cursor: cursor as number, leases: out };
}

async function writeAtomically(file: string, text: string): Promise<void> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  const f = await open(tmp, "w", 0o600);
  try {
    await f.writeFile(text);
    await f.sync();
  } finally {
    await f.close();
  }
  await rename(tmp, file);
}
