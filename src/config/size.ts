const SIZE_UNITS: Record<string, number> = { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3, TiB: 1024 ** 4 };

/** `8GiB`-style sizes (B, KiB, MiB, GiB, TiB) as bytes; undefined for anything else. */
export function parseSize(value: unknown): number | undefined {
  const match = typeof value === "string" ? /^(\d+)\s*(B|KiB|MiB|GiB|TiB)$/.exec(value.trim()) : null;
  return match ? Number(match[1]) * SIZE_UNITS[match[2]!]! : undefined;
}
