/** IPv4 addresses as unsigned 32-bit numbers, and CIDR blocks; pure. */

export interface Cidr {
  /** network address, host bits zero */
  base: number;
  prefixLength: number;
}

const octet = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

/** True for a dotted-quad IPv4 literal without leading zeros ("10.0.0.1", not "010.0.0.1" or "10.1"). */
export function isIpv4(text: string): boolean {
  const parts = text.split(".");
  return parts.length === 4 && parts.every((p) => octet.test(p));
}

/** "10.213.0.1" → 0x0ad50001; throws on anything but a canonical dotted quad. */
export function parseIpv4(text: string): number {
  if (!isIpv4(text)) throw new Error(`${JSON.stringify(text)} is not an IPv4 address`);
  return text.split(".").reduce((n, p) => n * 256 + Number(p), 0);
}

export function formatIpv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

/** "10.213.0.0/16" → its base and prefix; host bits must be zero, so a typo does not silently widen a pool. */
export function parseCidr(text: string): Cidr {
  const [addr, len, ...rest] = text.split("/");
  if (addr === undefined || len === undefined || rest.length || !/^\d{1,2}$/.test(len) || Number(len) > 32) {
    throw new Error(`${JSON.stringify(text)} is not an IPv4 CIDR block like 10.213.0.0/16`);
  }
  const prefixLength = Number(len);
  const base = parseIpv4(addr);
  if ((base & ~maskOf(prefixLength)) >>> 0 !== 0) throw new Error(`${text}: host bits are set; did you mean ${formatCidr({ base: (base & maskOf(prefixLength)) >>> 0, prefixLength })}?`);
  return { base, prefixLength };
}

export function formatCidr(c: Cidr): string {
  return `${formatIpv4(c.base)}/${c.prefixLength}`;
}

export function cidrContains(c: Cidr, address: number): boolean {
  return ((address & maskOf(c.prefixLength)) >>> 0) === c.base;
}

/** Number of addresses in the block. */
export function cidrSize(c: Cidr): number {
  return 2 ** (32 - c.prefixLength);
}

function maskOf(prefixLength: number): number {
  return prefixLength === 0 ? 0 : (0xffffffff << (32 - prefixLength)) >>> 0;
}

/**
 * Destinations no sandbox may reach, whatever DNS says and even with allow-all: "this" network, loopback,
 * link-local (169.254.169.254 is the cloud metadata service), multicast and reserved space incl. broadcast.
 * The sandbox pool itself is added by the caller (other sandboxes).
 */
export const alwaysBlockedCidrs: readonly string[] = ["0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/3"];
