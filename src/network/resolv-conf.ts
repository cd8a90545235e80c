import { isIpv4 } from "./ipv4.ts";

/**
 * The sandbox's /etc/resolv.conf: its DNS policy server on the host side of its /30, nothing else. No search
 * domains (a short name must not quietly become an allowed one), short timeouts so a refused name fails fast.
 */
export function renderResolvConf(hostAddress: string): string {
  if (!isIpv4(hostAddress)) throw new Error(`${hostAddress} is not an IPv4 address`);
  return ["# written by cleanroom: names resolve only through the sandbox's DNS policy server", `nameserver ${hostAddress}`, "options ndots:1 timeout:2 attempts:2", ""].join("\n");
}
