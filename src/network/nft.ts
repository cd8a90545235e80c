import { randomBytes } from "node:crypto";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { tryCommand, describeFailure } from "../host-command/index.ts";
import { dispatchMaps, sandboxIdOfNftObject } from "./names.ts";
import type { SandboxNftObjects } from "./nft-ruleset.ts";

const nftTimeoutMs = 15_000;
const maxListingBytes = 64 * 1024 * 1024;

/** Applies scripts to and lists one nft table. Scripts are serialized: our transactions never interleave. */
export interface NftTable {
  readonly table: string;
  /** Runs `nft -f` on the script: all of it or none of it. */
  apply(script: string): Promise<void>;
  /** Per-sandbox objects in the table, grouped by sandbox id (without set contents). */
  listSandboxObjects(): Promise<Map<string, SandboxNftObjects>>;
  /** Rules of one chain as nft JSON statements; undefined when the chain does not exist. */
  chainRules(chain: string): Promise<unknown[][] | undefined>;
}

/** `scratchDir` holds each script while nft reads it (host-command gives a child no stdin). */
export function nftTable(table: string, scratchDir: string): NftTable {
  let queue: Promise<unknown> = Promise.resolve();
  const serial = <T>(job: () => Promise<T>): Promise<T> => {
    const run = queue.then(job, job);
    queue = run.catch(() => {});
    return run;
  };

  const apply = (script: string) =>
    serial(async () => {
      if (!script.trim()) return;
      await mkdir(scratchDir, { recursive: true, mode: 0o700 });
      const file = join(scratchDir, `nft-${randomBytes(6).toString("hex")}.nft`);
      await writeFile(file, script, { mode: 0o600 });
      try {
        const result = await tryCommand("nft", ["-f", file], { timeoutMs: nftTimeoutMs });
        if (result.code !== 0) throw new Error(`${describeFailure("nft", ["-f", file], result)}\nscript:\n${excerpt(script)}`);
      } finally {
        await rm(file, { force: true });
      }
    });

  /** `terse` leaves out set and map contents */
  const listJson = async (args: string[], terse = true): Promise<Record<string, unknown>[] | undefined> => {
    const argv = ["-j", ...(terse ? ["-t"] : []), ...args];
    const result = await tryCommand("nft", argv, { timeoutMs: nftTimeoutMs, maxOutputBytes: maxListingBytes });
    if (result.code !== 0) {
      if (/No such file or directory/.test(result.stderr)) return undefined;
      throw new Error(describeFailure("nft", argv, result));
    }
    const parsed = JSON.parse(result.stdout) as { nftables?: Record<string, unknown>[] };
    return parsed.nftables ?? [];
  };

  return {
    table,
    apply,
    listSandboxObjects: () =>
      serial(async () => {
        const items = (await listJson(["list", "table", "inet", table])) ?? [];
        const byId = new Map<string, SandboxNftObjects>();
        const entry = (id: string) => {
          let e = byId.get(id);
          if (!e) byId.set(id, (e = { chains: [], sets: [], dispatch: [] }));
          return e;
        };
        for (const item of items) {
          const chain = item.chain as { name?: string } | undefined;
          const set = item.set as { name?: string } | undefined;
          if (chain?.name) {
            const id = sandboxIdOfNftObject(chain.name);
            if (id) entry(id).chains.push(chain.name);
          }
          if (set?.name) {
            const id = sandboxIdOfNftObject(set.name);
            if (id) entry(id).sets.push(set.name);
          }
        }
        // terse listings omit map contents: dispatch elements come from the maps themselves (small: one per sandbox)
        for (const map of Object.values(dispatchMaps)) {
          const listed = await listJson(["list", "map", "inet", table, map], false);
          for (const item of listed ?? []) {
            const elems = ((item.map as { elem?: unknown[] } | undefined)?.elem ?? []) as unknown[];
            for (const el of elems) {
              const [key, verdict] = Array.isArray(el) ? el : [];
              const target = (verdict as { jump?: { target?: string } } | undefined)?.jump?.target;
              const id = typeof target === "string" ? sandboxIdOfNftObject(target) : undefined;
              if (id && typeof key === "string") entry(id).dispatch.push(map);
            }
          }
        }
        return byId;
      }),
    chainRules: (chain) =>
      serial(async () => {
        const items = await listJson(["list", "chain", "inet", table, chain]);
        if (!items) return undefined;
        return items.flatMap((i) => ((i.rule as { expr?: unknown[] } | undefined)?.expr ? [(i.rule as { expr: unknown[] }).expr] : []));
      }),
  };
}

function excerpt(script: string): string {
  return script.length > 8192 ? script.slice(0, 8192) + "\n…" : script;
}
