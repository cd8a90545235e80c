import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";

export interface AptSource {
  types: string[];
  uris: string[];
  suites: string[];
  components: string[];
}

export interface AptDefaults {
  suite: string;
  mirror: string;
}

export const FALLBACK_SUITE = "bookworm";
export const FALLBACK_MIRROR = "http://deb.debian.org/debian";

/** VERSION_CODENAME from /etc/os-release text. */
export function parseOsReleaseCodename(text: string): string | undefined {
  const m = /^VERSION_CODENAME=("?)([A-Za-z0-9._-]+)\1\s*$/m.exec(text);
  return m?.[2];
}

/** One-line sources.list format: `deb [opts] uri suite [components…]`. */
export function parseSourcesList(text: string): AptSource[] {
  const out: AptSource[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.replace(/#.*$/, "").trim();
    if (!line) continue;
    const m = /^(deb|deb-src)\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)(.*)$/.exec(line);
    if (!m) continue;
    out.push({ types: [m[1]!], uris: [m[2]!], suites: [m[3]!], components: m[4]!.trim().split(/\s+/).filter(Boolean) });
  }
  return out;
}

/** deb822 `.sources` format: stanzas of `Field: value` separated by blank lines; `Enabled: no` skips one. */
export function parseDeb822Sources(text: string): AptSource[] {
  const out: AptSource[] = [];
  for (const stanza of text.split(/\n\s*\n/)) {
    const fields = new Map<string, string>();
    let last: string | undefined;
    for (const raw of stanza.split("\n")) {
      if (raw.startsWith("#")) continue;
      if (/^\s/.test(raw) && last) {
        fields.set(last, `${fields.get(last)} ${raw.trim()}`);
        continue;
      }
      const m = /^([A-Za-z][A-Za-z0-9-]*):\s*(.*)$/.exec(raw);
      if (!m) continue;
      last = m[1]!.toLowerCase();
      fields.set(last, m[2]!.trim());
    }
    if (!fields.has("uris") || (fields.get("enabled") ?? "yes").toLowerCase() === "no") continue;
    const list = (k: string) => (fields.get(k) ?? "").split(/\s+/).filter(Boolean);
    out.push({ types: list("types"), uris: list("uris"), suites: list("suites"), components: list("components") });
  }
  return out;
}

/** Picks the mirror that serves `suite` itself (not -security/-updates) with a usable scheme. */
export function chooseMirror(sources: AptSource[], suite: string): string | undefined {
  for (const s of sources) {
    if (!s.types.includes("deb") || !s.suites.includes(suite)) continue;
    const uri = s.uris.find((u) => /^(https?|file):\/\//.test(u) && !/security/.test(u));
    if (uri) return uri.replace(/\/+$/, "");
  }
  return undefined;
}

/** The host's suite and Debian mirror from /etc/os-release and apt's sources, else bookworm + deb.debian.org. */
export async function hostAptDefaults(etc = "/etc"): Promise<AptDefaults> {
  const osRelease = await readFile(join(etc, "os-release"), "utf8").catch(() => "");
  const suite = parseOsReleaseCodename(osRelease) ?? FALLBACK_SUITE;
  const sources: AptSource[] = parseSourcesList(await readFile(join(etc, "apt", "sources.list"), "utf8").catch(() => ""));
  const dir = join(etc, "apt", "sources.list.d");
  for (const name of (await readdir(dir).catch(() => [] as string[])).sort()) {
    const text = await readFile(join(dir, name), "utf8").catch(() => "");
    if (name.endsWith(".sources")) sources.push(...parseDeb822Sources(text));
    else if (name.endsWith(".list")) sources.push(...parseSourcesList(text));
  }
  return { suite, mirror: chooseMirror(sources, suite) ?? FALLBACK_MIRROR };
}
