import { CleanroomError, messageOf } from "../errors/index.ts";
import { silentLogger, type Logger } from "../observability/index.ts";
import { alwaysBlockedCidrs, parseCidr, type Cidr } from "./ipv4.ts";
import { interfacePrefixPattern, tableNamePattern, type NetworkNaming } from "./names.ts";
import { hostResolver } from "./resolver.ts";
import type { HostResolver, NetworkManagerOptions } from "./types.ts";

/** NetworkManagerOptions checked, with defaults filled in. */
export interface Settings {
  naming: NetworkNaming;
  stateDir: string;
  pool: string;
  gatewayPort: number;
  dnsPort: number;
  gatewayName: string;
  resolver: HostResolver;
  logger: Logger;
  /** every never-reachable range, the pool included */
  blocked: Cidr[];
  /** the caller's extra never-reachable ranges */
  blockedCidrs: string[];
  ttlFloorS: number;
  ttlCapS: number;
  dropLog: boolean;
}

export function settingsOf(o: NetworkManagerOptions, resolveDir: (dir: string) => string): Settings {
  const bad = (why: string) => new CleanroomError("invalid_argument", `network: ${why}`);
  const naming = { table: o.tableName ?? "cleanroom", interfacePrefix: o.interfacePrefix ?? "cr-" };
  if (!tableNamePattern.test(naming.table)) throw bad(`table name ${JSON.stringify(naming.table)} must match ${tableNamePattern}`);
  if (!interfacePrefixPattern.test(naming.interfacePrefix)) throw bad(`interface prefix ${JSON.stringify(naming.interfacePrefix)} must match ${interfacePrefixPattern}`);
  const pool = o.pool ?? "10.213.0.0/16";
  const blockedCidrs = o.blockedCidrs ?? [];
  let blocked: Cidr[];
  try {
    if (parseCidr(pool).prefixLength > 30) throw new Error(`pool ${pool} is smaller than one /30`);
    blocked = [...alwaysBlockedCidrs, pool, ...blockedCidrs].map(parseCidr);
  } catch (err) {
    throw bad(messageOf(err));
  }
  const port = (p: number | undefined, fallback: number, what: string) => {
    const v = p ?? fallback;
    if (!Number.isInteger(v) || v < 1 || v > 65535) throw bad(`${what} ${v} is not in 1..65535`);
    return v;
  };
  const ttlFloorS = o.dnsTtlFloorS ?? 30;
  const ttlCapS = o.dnsTtlCapS ?? 3600;
  if (!(ttlFloorS >= 20 && ttlCapS >= ttlFloorS && ttlCapS <= 86_400)) throw bad(`DNS TTL floor ${ttlFloorS} / cap ${ttlCapS}: need 20 <= floor <= cap <= 86400`);
  return {
    naming,
    stateDir: resolveDir(o.stateDir),
    pool,
    gatewayPort: port(o.gatewayPort, 8170, "gateway port"),
    dnsPort: port(o.dnsPort, 53, "DNS port"),
    gatewayName: (o.gatewayName ?? "gateway.cleanroom.internal").toLowerCase(),
    resolver: o.resolver ?? hostResolver(),
    logger: o.logger ?? silentLogger(),
    blocked,
    blockedCidrs,
    ttlFloorS,
    ttlCapS,
    dropLog: !o.disableDropLog,
  };
}
