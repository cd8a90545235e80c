/**
 * Host uid/gid range that sandbox ids map onto: root inside a sandbox is `hostBase` on the host,
 * an id no host account owns, so an escape lands as nobody. Layers are unpacked with ownership
 * already shifted into this range.
 */
export interface IdRange {
  hostBase: number;
  size: number;
}

export const sandboxIdRange: IdRange = { hostBase: 1_200_000_000, size: 65_536 };

/** Host id for an id inside the sandbox; ids outside the range fold to the sandbox's nobody (65534). */
export function toHostId(range: IdRange, containerId: number): number {
  const inside = Number.isInteger(containerId) && containerId >= 0 && containerId < range.size ? containerId : 65_534;
  return range.hostBase + inside;
}
