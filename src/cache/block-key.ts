/**
 * Cache keys of dependency and service blocks. Pure: everything the key depends on is passed in, so the same
 * repository state, policy and image give the same key on any host, and a change anywhere gives another one.
 */
import { createHash } from "node:crypto";
import { posix } from "node:path";
import { canonicalJson, type CompiledBlock } from "../policy/index.ts";

/** Bumped whenever what a published output holds, or how keys are made, changes: older entries stop matching. */
export const CACHE_LAYOUT_VERSION = 1;

/** One entry of `git ls-tree -r` at the checked-out commit. */
export interface TreeEntry {
  path: string;
  /** git's octal mode: 100644, 100755, 120000 (symlink), 160000 (submodule) */
  mode: string;
  /** the blob's (content) or, for a submodule, the commit's object id */
  oid: string;
}

/**
 * Files whose content decides which toolchain a block runs with; they join every block's key (Cleanroom v0.8),
 * so an upgrade in `.mise.toml` or `.nvmrc` never reuses outputs built by the old toolchain.
 */
export const TOOLCHAIN_MANIFESTS = [
  ".tool-versions", ".mise.toml", "mise.toml", ".mise/config.toml", ".config/mise.toml", ".nvmrc", ".node-version",
  ".python-version", ".ruby-version", ".go-version", ".java-version", "rust-toolchain", "rust-toolchain.toml", ".bun-version",
] as const;

/** What one declared input matched: [path, mode, object id], sorted by path. An input matching nothing is recorded too. */
export interface InputMatch {
  pattern: string;
  files: [path: string, mode: string, oid: string][];
}

/**
 * What the declared inputs name in the tree: a file, a submodule (its commit), everything under a directory, or
 * the files a glob matches (`*`, `**`, `?`, `[…]`, `{a,b}`, as path.matchesGlob reads them).
 */
export function matchInputs(patterns: readonly string[], tree: readonly TreeEntry[]): InputMatch[] {
  return patterns.map((pattern) => {
    const clean = pattern.replace(/^\.\//, "").replace(/\/+$/, "");
    const glob = /[*?[\]{}]/.test(clean);
    const files = tree
      .filter((e) => (glob ? posix.matchesGlob(e.path, clean) : e.path === clean || e.path.startsWith(`${clean}/`)))
      .map((e): [string, string, string] => [e.path, e.mode, e.oid])
      .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    return { pattern, files };
  });
}

/** The toolchain manifests present at the commit. */
export function toolchainFiles(tree: readonly TreeEntry[]): [string, string][] {
  const wanted = new Set<string>(TOOLCHAIN_MANIFESTS);
  return tree.filter((e) => wanted.has(e.path)).map((e): [string, string] => [e.path, e.oid]).sort((a, b) => (a[0] < b[0] ? -1 : 1));
}

/** Everything a block's key is made of. Kept whole in the cache record, so a miss can say what changed. */
export interface BlockKeyParts {
  layout: number;
  backend: string;
  policyHash: string;
  imageDigest: string;
  stage: "dependencies" | "services";
  name: string;
  command: string[];
  env: Record<string, string>;
  /** as declared (guest paths; `~` stays literal: the image and its user decide HOME, and both are in the key) */
  outputs: { dirs: string[]; files: string[] };
  repositoryPath: string;
  inputs: InputMatch[];
  toolchains: [string, string][];
  /** keys of the blocks before this one, in order */
  earlier: string[];
}

export function blockKeyParts(args: {
  backend: string; policyHash: string; imageDigest: string; stage: "dependencies" | "services"; block: CompiledBlock;
  repositoryPath: string; tree: readonly TreeEntry[]; earlier: readonly string[];
}): BlockKeyParts {
  const { block } = args;
  return {
    layout: CACHE_LAYOUT_VERSION,
    backend: args.backend,
    policyHash: args.policyHash,
    imageDigest: args.imageDigest,
    stage: args.stage,
    name: block.name,
    command: block.command,
    env: block.env,
    outputs: { dirs: [...block.outputs.dirs].sort(), files: [...block.outputs.files].sort() },
    repositoryPath: args.repositoryPath,
    inputs: matchInputs(block.inputs, args.tree),
    toolchains: toolchainFiles(args.tree),
    earlier: [...args.earlier],
  };
}

/** `sha256:<hex>` of the parts' canonical JSON. */
export function blockKey(parts: BlockKeyParts): string {
  return `sha256:${createHash("sha256").update(canonicalJson(parts)).digest("hex")}`;
}

/**
 * Why a block missed, compared with the last published run of the same block (same repository and name).
 * Names what changed, e.g. "inputs changed: package-lock.json".
 */
export function missReason(parts: BlockKeyParts, previous: BlockKeyParts | undefined): string {
  if (!previous) return "no cached outputs for this block yet";
  const changed: string[] = [];
  const same = (a: unknown, b: unknown) => canonicalJson(a) === canonicalJson(b);
  if (parts.layout !== previous.layout) changed.push("cache layout version");
  if (!same(parts.inputs, previous.inputs)) changed.push(`inputs changed: ${changedInputs(parts.inputs, previous.inputs).join(", ") || "the declared input list"}`);
  if (!same(parts.toolchains, previous.toolchains)) changed.push("toolchain manifests changed");
  if (!same(parts.command, previous.command)) changed.push("command changed");
  if (!same(parts.env, previous.env)) changed.push("env changed");
  if (!same(parts.outputs, previous.outputs)) changed.push("outputs changed");
  if (!same(parts.earlier, previous.earlier)) changed.push("an earlier block changed");
  if (parts.imageDigest !== previous.imageDigest) changed.push("image changed");
  if (parts.backend !== previous.backend) changed.push("backend changed");
  if (parts.repositoryPath !== previous.repositoryPath) changed.push("repository path changed");
  if (parts.policyHash !== previous.policyHash) changed.push("policy changed");
  return changed.length ? changed.join("; ") : "the cached outputs were removed";
}

const MAX_NAMED_CHANGES = 5;

function changedInputs(now: InputMatch[], before: InputMatch[]): string[] {
  const flatten = (matches: InputMatch[]) => new Map(matches.flatMap((m) => m.files.map(([path, mode, oid]) => [path, `${mode} ${oid}`] as const)));
  const a = flatten(now);
  const b = flatten(before);
  const paths = [...new Set([...a.keys(), ...b.keys()])].filter((p) => a.get(p) !== b.get(p)).sort();
  return paths.length > MAX_NAMED_CHANGES ? [...paths.slice(0, MAX_NAMED_CHANGES), `${paths.length - MAX_NAMED_CHANGES} more`] : paths;
}

/**
 * Block env values are literal, except a leading `~`, `$HOME`, `${HOME}` (the user's home) and `$WORKSPACE`,
 * `${WORKSPACE}` (the repository path), as Cleanroom expands them.
 */
export function expandBlockValue(value: string, where: { home: string; workspace: string }): string {
  const home = /^(~|\$\{HOME\}|\$HOME)(?=\/|$)/.exec(value);
  if (home) return where.home + value.slice(home[0].length);
  const workspace = /^(\$\{WORKSPACE\}|\$WORKSPACE)(?=\/|$)/.exec(value);
  if (workspace) return where.workspace + value.slice(workspace[0].length);
  return value;
}

/** A declared output as a guest path: relative ones are under the repository; `~`/HOME/WORKSPACE expanded. */
export function outputPath(declared: string, where: { home: string; workspace: string }): string {
  const expanded = expandBlockValue(declared, where);
  const absolute = expanded.startsWith("/") ? expanded : posix.join(where.workspace, expanded);
  return posix.normalize(absolute).replace(/\/+$/, "") || "/";
}
