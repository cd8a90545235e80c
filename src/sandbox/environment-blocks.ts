/**
 * Dependency and service blocks at sandbox creation. Before launch, each block's key is computed from the
 * repository's tree at the commit (the gateway's mirror), the policy and the image; the published outputs of the
 * leading hits are stacked on the image as overlay layers, so restoring them costs no copy at all. After the
 * checkout, every other block runs in order under its own egress stage, and its declared outputs are published
 * unless it wrote outside them (escaped writes) — then it warns and publishes nothing.
 */
import { chmod, lchown, lstat, statfs } from "node:fs/promises";
import { join, posix } from "node:path";
import { SandboxFiles, type AgentClient } from "../agent-protocol/index.ts";
import type { Backend } from "../backends/index.ts";
import {
  blockKey, blockKeyParts, escapedWrites, expandBlockValue, missReason, outputCapacityBytes, outputPath,
  type BlockCache, type BlockKeyParts, type BlockRecord,
} from "../cache/index.ts";
import { toHostId, type IdRange } from "../config/index.ts";
import { CleanroomError, messageOf } from "../errors/index.ts";
import { unpackLayerStream } from "../image/index.ts";
import type { Logger } from "../observability/index.ts";
import type { CompiledBlock, CompiledPolicy } from "../policy/index.ts";
import type { SandboxEventLog } from "./event-log.ts";
import { mergeEnv } from "./execution-runner.ts";
import { failureSummary, runGuestCommand } from "./guest-command.ts";
import type { RepositoryRecord, SandboxRecord } from "./records.ts";
import type { RepositorySource } from "./repository-checkout.ts";

export type BlockStage = "dependencies" | "services";

/** One block of a sandbox's creation: its key, and the cached outputs it is restored from (a hit). */
export interface BlockStep {
  stage: BlockStage;
  block: CompiledBlock;
  parts: BlockKeyParts;
  key: string;
  hit?: BlockRecord;
}

/** What the creator sees of a block: CreateSandboxStream's block progress and the `cache_block` event. */
export interface BlockReport {
  stage: BlockStage;
  name: string;
  key: string;
  /** hit: restored; miss: will run; published / escaped / unpublished: ran, and what became of its outputs */
  result: "hit" | "miss" | "published" | "escaped" | "unpublished";
  reason: string;
  durationMs: number;
  outputs: string[];
}

export type BlockPhase = "lookup_cache" | "restore_cache" | "bootstrap_dependencies" | "bootstrap_services" | "publish_cache";
export type BlockProgress = { phase: BlockPhase; message: string; block?: BlockReport };

export interface EnvironmentBlocksOptions {
  cache: BlockCache;
  repositories: RepositorySource;
  idRange: IdRange;
  /** floor of what one block may publish (`minimum_cache_output_volume_bytes`) */
  minimumOutputBytes: number;
  events: SandboxEventLog;
  logger: Logger;
}

/** What a block run needs of its sandbox. */
export interface BlockRunContext {
  record: SandboxRecord & { policy: CompiledPolicy; repository: RepositoryRecord };
  agent: AgentClient;
  backend: Backend;
  activateStage(stage: BlockStage): Promise<void>;
  /** the image's env plus the gateway's */
  env: string[];
  user: string;
  report(progress: BlockProgress): void;
}

const MAX_TREE_LISTING_BYTES = 64 * 1024 * 1024;
const BLOCK_TIMEOUT_MS = 60 * 60_000;
const MAX_SCANNED_WRITES = 2_000_000;
const MAX_OUTPUT_ENTRIES = 1_000_000;
const SMALL_COMMAND_TIMEOUT_MS = 30_000;

/** The blocks of a policy in the order they run: dependencies, then services. */
export function blocksOf(policy: CompiledPolicy): [BlockStage, CompiledBlock][] {
  return [
    ...policy.dependencies.blocks.map((b): [BlockStage, CompiledBlock] => ["dependencies", b]),
    ...policy.services.blocks.map((b): [BlockStage, CompiledBlock] => ["services", b]),
  ];
}

export class EnvironmentBlocks {
  readonly #opts: EnvironmentBlocksOptions;

  constructor(opts: EnvironmentBlocksOptions) {
    this.#opts = opts;
  }

  /**
   * Keys every block and looks it up. Hits restore only while every earlier block hit too: once one block runs,
   * the ones after it run as well, on top of what it produced.
   */
  async plan(record: SandboxRecord & { policy: CompiledPolicy; repository: RepositoryRecord }, report: (p: BlockProgress) => void): Promise<BlockStep[]> {
    const { policy, repository } = record;
    const started = performance.now();
    const tree = await this.#opts.repositories.listTree(repository.remoteUrl, repository.commit, MAX_TREE_LISTING_BYTES);
    const steps: BlockStep[] = [];
    const earlier: string[] = [];
    let ranBefore: string | undefined;
    for (const [stage, block] of blocksOf(policy)) {
      const parts = blockKeyParts({ backend: record.backend, policyHash: record.policyHash, imageDigest: record.imageDigest, stage, block, repositoryPath: repository.path, tree, earlier });
      const key = blockKey(parts);
      earlier.push(key);
      const found = ranBefore === undefined ? await this.#opts.cache.lookup(key) : undefined;
      const durationMs = Math.round(performance.now() - started);
      if (found) {
        steps.push({ stage, block, parts, key, hit: found.record });
        this.#report(record.id, report, "lookup_cache", { stage, name: block.name, key, result: "hit", reason: "", durationMs, outputs: found.record.paths });
        continue;
      }
      const reason = ranBefore !== undefined ? `block ${ranBefore} runs first, so this one runs on top of it` : missReason(parts, this.#opts.cache.previous(repository.remoteUrl, stage, block.name)?.parts);
      ranBefore ??= block.name;
      steps.push({ stage, block, parts, key });
      this.#report(record.id, report, "lookup_cache", { stage, name: block.name, key, result: "miss", reason, durationMs, outputs: [] });
    }
    return steps;
  }

  /** Layer dirs of the hits, lowest first: they go on top of the image's layers. */
  restoredLayers(steps: BlockStep[]): string[] {
    return steps.flatMap((s) => (s.hit ? [this.#opts.cache.layerDir(s.hit)] : []));
  }

  /** Runs the blocks that missed, in order, each under its stage, and publishes what it may. */
  async runMisses(steps: BlockStep[], ctx: BlockRunContext): Promise<void> {
    const misses = steps.filter((s) => !s.hit);
    if (!misses.length) return;
    const where = { home: await homeOf(ctx), workspace: ctx.record.repository.path };
    for (const step of misses) {
      await ctx.activateStage(step.stage);
      await this.#runBlock(step, ctx, where);
    }
  }

  async #runBlock(step: BlockStep, ctx: BlockRunContext, where: { home: string; workspace: string }): Promise<void> {
    const { block, stage } = step;
    const { record, backend } = ctx;
    const outputs = [...block.outputs.dirs, ...block.outputs.files].map((p) => outputPath(p, where));
    const report = (phase: BlockPhase, result: BlockReport["result"], reason: string, started: number, paths: string[] = outputs) =>
      this.#report(record.id, ctx.report, phase, { stage, name: block.name, key: step.key, result, reason, durationMs: Math.round(performance.now() - started), outputs: paths });
    ctx.report({ phase: stage === "dependencies" ? "bootstrap_dependencies" : "bootstrap_services", message: `running ${stage} block ${block.name}` });
    // without a scan nothing can vouch for the outputs: the block still runs, its outputs stay unpublished
    const scan = () => backend.scanWrites(record.id, MAX_SCANNED_WRITES).catch((err: unknown) => new Error(`cannot check the block's writes: ${messageOf(err)}`));
    const before = await scan();
    const started = performance.now();
    const env = mergeEnv(ctx.env, Object.entries(block.env).map(([name, value]) => `${name}=${expandBlockValue(value, where)}`));
    const result = await runGuestCommand(ctx.agent, { argv: block.command, env, cwd: where.workspace, ...(ctx.user ? { user: ctx.user } : {}) }, { timeoutMs: BLOCK_TIMEOUT_MS });
    if (result.exitCode !== 0) {
      throw new CleanroomError("runtime_launch_failed", `${stage} block ${block.name} failed: ${failureSummary(result)}`, { block: block.name, exit_code: result.exitCode });
    }
    const ranMs = performance.now() - started;
    const after = await scan();
    if (before instanceof Error || after instanceof Error) {
      report("publish_cache", "unpublished", `ran in ${Math.round(ranMs)} ms; ${(before instanceof Error ? before : (after as Error)).message}`, started);
      return;
    }
    const escaped = escapedWrites(before, after, outputs);
    if (before.truncated || after.truncated || escaped.count) {
      const why = escaped.count
        ? `wrote ${escaped.count} path(s) outside its declared outputs: ${escaped.paths.join(", ")}${escaped.count > escaped.paths.length ? ", …" : ""}; declare them as outputs (or write to /tmp) to cache this block`
        : `wrote more than ${MAX_SCANNED_WRITES} paths; too many to check for escaped writes`;
      this.#opts.logger.warn({ sandbox_id: record.id, block: block.name, escaped: escaped.paths }, "block wrote outside its outputs; not published");
      report("publish_cache", "escaped", why, started);
      return;
    }
    const publishStarted = performance.now();
    try {
      const published = await this.#publish(step, ctx, outputs);
      report("publish_cache", "published", `ran in ${Math.round(ranMs)} ms; published ${published.bytes} bytes in ${Math.round(performance.now() - publishStarted)} ms`, started, published.paths);
    } catch (err) {
      // the outputs are in this sandbox either way: only later sandboxes lose the reuse
      this.#opts.logger.warn({ sandbox_id: record.id, block: block.name, err }, "block outputs not published");
      report("publish_cache", "unpublished", `ran in ${Math.round(ranMs)} ms; outputs not published: ${messageOf(err)}`, started);
    }
  }

  /** Archives the block's outputs inside the sandbox (its own view, symlinks never followed) into a new cache layer. */
  async #publish(step: BlockStep, ctx: BlockRunContext, outputs: string[]): Promise<BlockRecord> {
    const { cache, idRange } = this.#opts;
    const files = new SandboxFiles(ctx.agent);
    const present: string[] = [];
    for (const path of outputs) {
      const found = await files.stat(path).then(() => true, (err: unknown) => {
        if (err instanceof CleanroomError && err.code === "not_found") return false;
        throw err;
      });
      if (found) present.push(path);
    }
    const previous = cache.previous(ctx.record.repository.remoteUrl, step.stage, step.block.name);
    const capacity = outputCapacityBytes(this.#opts.minimumOutputBytes, previous?.bytes);
    const space = await statfs(cache.root);
    const needed = (previous?.diskBytes ?? 0) + 256 * 1024 * 1024;
    if (space.bavail * space.bsize < needed) throw new CleanroomError("resource_exhausted", `the cache disk has ${space.bavail * space.bsize} bytes free; publishing needs about ${needed}`);
    return cache.publish({ key: step.key, parts: step.parts, repositoryUrl: ctx.record.repository.remoteUrl, paths: present }, async (layerDir) => {
      if (!present.length) return { bytes: 0, entries: 0 };
      const tar = files.archive("/", present.map((p) => p.slice(1)), { maxBytes: capacity, maxEntries: MAX_OUTPUT_ENTRIES });
      const unpacked = await unpackLayerStream(tar, layerDir, idRange);
      await copyParentMetadata(files, layerDir, present, idRange);
      return { bytes: unpacked.bytes, entries: unpacked.entries };
    });
  }

  #report(sandboxId: string, report: (p: BlockProgress) => void, phase: BlockPhase, block: BlockReport): void {
    const verb = { hit: "restored", miss: "miss", published: "published", escaped: "not cached", unpublished: "not published" }[block.result];
    const message = `${block.stage} ${block.name}: ${verb}${block.reason ? ` (${block.reason})` : ""}`;
    this.#opts.events.record(sandboxId, "cache_block", message, {
      ...(block.result === "escaped" ? { reasonCode: "escaped_writes" } : {}),
      attributes: { stage: block.stage, block: block.name, key: block.key, result: block.result, miss_reason: block.result === "miss" ? block.reason : "", reason: block.reason, duration_ms: String(block.durationMs), outputs: block.outputs.join(",") },
    });
    this.#opts.logger.info({ sandbox_id: sandboxId, stage: block.stage, block: block.name, cache_key: block.key, result: block.result, miss_reason: block.result === "miss" ? block.reason : undefined, duration_ms: block.durationMs }, "block cache");
    report({ phase, message, block });
  }
}

/** The sandbox user's HOME, as its executions see it (outputs and env values under `~` resolve there). */
async function homeOf(ctx: BlockRunContext): Promise<string> {
  const result = await runGuestCommand(ctx.agent, { argv: ["/bin/sh", "-c", 'printf %s "$HOME"'], env: ctx.env, ...(ctx.user ? { user: ctx.user } : {}) }, { timeoutMs: SMALL_COMMAND_TIMEOUT_MS, maxStdoutBytes: 4096 });
  const home = result.stdout;
  if (result.exitCode !== 0 || !home.startsWith("/") || /[\0-\x1f]/.test(home)) {
    throw new CleanroomError("runtime_launch_failed", `cannot tell the sandbox user's HOME for block outputs (${failureSummary(result)})`);
  }
  return posix.normalize(home).replace(/\/+$/, "") || "/";
}

/**
 * The directories above each output come into the layer implicitly (root, 0755); give them the mode and owner
 * they have in the sandbox, or a hit would turn e.g. a 0700 home directory into a 0755 one.
 */
async function copyParentMetadata(files: SandboxFiles, layerDir: string, outputs: string[], idRange: IdRange): Promise<void> {
  const parents = new Set<string>();
  for (const output of outputs) {
    for (let dir = posix.dirname(output); dir !== "/"; dir = posix.dirname(dir)) parents.add(dir);
  }
  for (const dir of parents) {
    const inSandbox = await files.stat(dir);
    // the tar is the sandbox's: an ancestor may have come in as a symlink, and chmod would follow it out of the layer
    if (inSandbox.type !== "dir" || !(await isRealDirectoryPath(layerDir, dir))) continue;
    const hostPath = join(layerDir, dir);
    await chmod(hostPath, inSandbox.mode & 0o7777);
    await lchown(hostPath, toHostId(idRange, inSandbox.uid), toHostId(idRange, inSandbox.gid));
  }
}

/** Whether every component of `guestPath` under `root` is a real directory (no symlink anywhere on the way). */
export async function isRealDirectoryPath(root: string, guestPath: string): Promise<boolean> {
  let path = root;
  for (const part of guestPath.split("/").filter(Boolean)) {
    path = join(path, part);
    const st = await lstat(path).catch(() => undefined);
    if (!st?.isDirectory()) return false;
  }
  return true;
}
