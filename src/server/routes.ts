import { once } from "node:events";
import { create } from "@bufbuild/protobuf";
import type { ConnectRouter, HandlerContext } from "@connectrpc/connect";
import { createWritableIterable } from "@connectrpc/connect/protocol";
import {
  CreatePhase, CreateSandboxStreamResponseSchema, ExecutionService, ExecutionStatus, HostService, ImageService, SandboxService, SnapshotService,
  type CreateSandboxRequest, type ImageProgress as ImageProgressMessage, type RepositoryCheckout,
} from "../api/index.ts";
import { CleanroomError } from "../errors/index.ts";
import { verifyCompiledPolicy } from "../policy/index.ts";
import type { ImageProgress, ImageRecord } from "../image/index.ts";
import type { CreateProgress, CreateSandboxInput, RepositoryCheckoutInput } from "../sandbox/index.ts";
import { ownerFor } from "./authorization.ts";
import { doctorReport } from "./doctor.ts";
import { fileMethods } from "./file-routes.ts";
import { pruneStorage, storageUsage, type StorageSelection } from "./storage.ts";
import { traceOf, traceUrl } from "./trace-context.ts";
import { eventMessage, executionMessage, imageMessage, sandboxMessage, snapshotMessage } from "./convert.ts";
import type { DaemonContext } from "./daemon-context.ts";

const PHASES: Record<CreateProgress["phase"], CreatePhase> = {
  resolve_image: CreatePhase.RESOLVE_IMAGE,
  pull_image: CreatePhase.PULL_IMAGE,
  provision: CreatePhase.PROVISION,
  ready: CreatePhase.READY,
  resolve_repository: CreatePhase.RESOLVE_REPOSITORY,
  bootstrap_repository: CreatePhase.BOOTSTRAP_REPOSITORY,
  lookup_cache: CreatePhase.LOOKUP_CACHE,
  restore_cache: CreatePhase.RESTORE_CACHE,
  bootstrap_dependencies: CreatePhase.BOOTSTRAP_DEPENDENCIES,
  bootstrap_services: CreatePhase.BOOTSTRAP_SERVICES,
  publish_cache: CreatePhase.PUBLISH_CACHE,
  restore_snapshot: CreatePhase.RESTORE_SNAPSHOT,
};

/** Registers the cleanroom.v1 services on `router`, backed by the daemon's parts. */
export function registerRoutes(router: ConnectRouter, daemon: DaemonContext): void {
  const { supervisor, images } = daemon;
  const runner = supervisor.executions;

  router.service(SandboxService, {
    ...fileMethods(supervisor),
    async createSandbox(req, ctx) {
      return { sandbox: sandboxMessage(await supervisor.createSandbox({ ...(await createInput(req, ctx)), ...traceOf(ctx) })) };
    },
    async *createSandboxStream(req, ctx) {
      const updates = createWritableIterable<CreateProgress>();
      const input = { ...(await createInput(req, ctx)), ...traceOf(ctx) };
      const created = supervisor.createSandbox(input, (p) => void updates.write(p).catch(() => undefined))
        .finally(() => updates.close());
      for await (const p of abortable(updates, ctx)) {
        yield create(CreateSandboxStreamResponseSchema, {
          phase: PHASES[p.phase],
          message: "message" in p ? p.message : (p.progress.message ?? p.progress.phase),
          ...("progress" in p ? { completedBytes: BigInt(p.progress.receivedBytes ?? 0), totalBytes: BigInt(p.progress.totalBytes ?? 0) } : {}),
          ...("block" in p && p.block ? { block: { ...p.block, durationMs: BigInt(p.block.durationMs) } } : {}),
        });
      }
      yield create(CreateSandboxStreamResponseSchema, { phase: CreatePhase.READY, message: "ready", sandbox: sandboxMessage(await created) });
    },
    async getSandbox(req) {
      return { sandbox: sandboxMessage(supervisor.getSandbox(req.sandboxId)), recentEvents: supervisor.recentEvents(req.sandboxId).map(eventMessage) };
    },
    async listSandboxes(req) {
      return { sandboxes: supervisor.listSandboxes(req.all).map(sandboxMessage) };
    },
    async *dialSandboxPort(requests, ctx) {
      const iterator = requests[Symbol.asyncIterator]();
      const first = await iterator.next();
      if (first.done || !first.value.sandboxId || !first.value.port) throw new CleanroomError("invalid_argument", "the first DialSandboxPort message names sandbox_id and port");
      const connection = await supervisor.dialPort(first.value.sandboxId, first.value.port);
      ctx.signal.addEventListener("abort", () => connection.destroy());
      const pumped = (async () => {
        for (let next: IteratorResult<typeof first.value> = first; !next.done; next = await iterator.next()) {
          if (next.value.data.length && !connection.write(next.value.data)) await once(connection, "drain");
          if (next.value.closeWrite) break;
        }
        connection.end();
      })();
      pumped.catch((err: Error) => connection.destroy(err));
      for await (const chunk of connection) yield { data: chunk as Buffer };
    },
    async suspendSandbox(req) {
      return { sandbox: sandboxMessage(await supervisor.suspendSandbox(req.sandboxId)) };
    },
    async resumeSandbox(req) {
      return { sandbox: sandboxMessage(await supervisor.resumeSandbox(req.sandboxId)) };
    },
    async terminateSandbox(req) {
      return { sandbox: sandboxMessage(await supervisor.terminateSandbox(req.sandboxId, !req.async)) };
    },
    async *streamSandboxEvents(req, ctx) {
      for await (const event of supervisor.streamEvents(req.sandboxId, Number(req.afterSequence), req.follow, ctx.signal)) {
        yield { event: eventMessage(event) };
      }
    },
  });

  router.service(SnapshotService, {
    async createSnapshot(req) {
      return { snapshot: snapshotMessage(await supervisor.createSnapshot(req.sandboxId, req.name)) };
    },
    async getSnapshot(req) {
      return { snapshot: snapshotMessage(supervisor.getSnapshot(req.snapshotId)) };
    },
    async listSnapshots() {
      return { snapshots: supervisor.listSnapshots().map(snapshotMessage) };
    },
    async deleteSnapshot(req) {
      return { snapshot: snapshotMessage(await supervisor.deleteSnapshot(req.snapshotId)) };
    },
  });

  router.service(ExecutionService, {
    async createExecution(req, ctx) {
      const record = await supervisor.createExecution({
        ...traceOf(ctx),
        sandboxId: req.sandboxId,
        command: req.command,
        shell: req.shell,
        env: req.env,
        cwd: req.cwd,
        user: req.user,
        ...(req.tty ? { tty: { rows: req.terminalSize?.rows || 24, cols: req.terminalSize?.cols || 80 } } : {}),
        attachStdin: req.attachStdin,
        timeoutSeconds: req.timeoutSeconds,
        skipRunBefore: req.skipRunBefore,
      });
      return { execution: executionMessage(record) };
    },
    async getExecution(req) {
      return { execution: executionMessage(runner.get(req.executionId)) };
    },
    async inspectExecution(req) {
      const tail = await runner.tail(req.executionId, Math.min(req.outputBytes, 16 * 1024 * 1024));
      const record = runner.get(req.executionId);
      const t = record.timings;
      return {
        execution: executionMessage(record),
        stdoutTail: tail.stdout,
        stderrTail: tail.stderr,
        artifactsDir: runner.artifactsDir(req.executionId),
        traceId: record.traceId ?? "",
        traceUrl: traceUrl(daemon.traceUrlTemplate, record.traceId),
        ...(t ? { timings: { rootfsPrepMs: t.rootfsPrepMs, networkSetupMs: t.networkSetupMs, readyMs: t.readyMs, commandMs: t.commandMs, totalMs: t.totalMs } } : {}),
      };
    },
    async listExecutions(req) {
      return { executions: runner.list(req.sandboxId || undefined, req.all).map(executionMessage) };
    },
    async cancelExecution(req) {
      await supervisor.wakeForExecution(req.executionId);
      return { execution: executionMessage(runner.cancel(req.executionId, req.signal)) };
    },
    async writeExecutionStdin(req) {
      await supervisor.wakeForExecution(req.executionId);
      await runner.writeStdin(req.executionId, req.data);
      return {};
    },
    async closeExecutionStdin(req) {
      await supervisor.wakeForExecution(req.executionId);
      runner.closeStdin(req.executionId);
      return {};
    },
    async resizeExecutionTerminal(req) {
      await supervisor.wakeForExecution(req.executionId);
      runner.resize(req.executionId, req.terminalSize?.rows ?? 0, req.terminalSize?.cols ?? 0);
      return {};
    },
    async *streamExecution(req, ctx) {
      for await (const item of supervisor.streamExecution(req.executionId, req.follow, ctx.signal)) {
        if ("output" in item) {
          yield { event: { case: item.output.stream, value: item.output.data } };
        } else {
          const done = item.exit;
          yield {
            event: {
              case: "exit",
              value: {
                status: ExecutionStatus[done.status],
                exitCode: done.exitCode ?? 0,
                signal: done.signal,
                statusReason: done.statusReason,
                networkWarnings: item.networkWarnings,
              },
            },
          };
        }
      }
    },
  });

  router.service(ImageService, {
    async *pullImage(req, ctx) {
      yield* withImageProgress(ctx, (onProgress) => images.pull(req.ref, { onProgress, signal: ctx.signal }));
    },
    async *importImage(req, ctx) {
      if (!req.archivePath.startsWith("/")) throw new CleanroomError("invalid_argument", "archive_path must be an absolute path on the daemon's host");
      yield* withImageProgress(ctx, (onProgress) => images.importArchive(req.ref, req.archivePath, { onProgress }));
    },
    async listImages() {
      return { images: (await images.list()).map(imageMessage) };
    },
    async removeImage(req) {
      await images.remove(req.ref);
      return {};
    },
    async *warmup(_req, ctx) {
      yield* withImageProgress(ctx, async (onProgress) => {
        const image = await images.buildBaseImage({ onProgress });
        onProgress({ phase: "unpacking", message: "unpacking layers" });
        await images.layerDirs(image);
        supervisor.fillWarmPool();
        return image;
      });
    },
  });

  router.service(HostService, {
    async doctor(req) {
      return doctorReport(daemon, req.backend);
    },
    async storageUsage(req) {
      const categories = await storageUsage(daemon, selectionOf(req.selection));
      return {
        categories: categories.map((c) => ({ ...c, bytes: BigInt(c.bytes), reclaimableBytes: BigInt(c.reclaimableBytes), allReclaimableBytes: BigInt(c.allReclaimableBytes) })),
        totalBytes: BigInt(categories.reduce((total, c) => total + c.bytes, 0)),
        reclaimableBytes: BigInt(categories.reduce((total, c) => total + c.reclaimableBytes, 0)),
      };
    },
    async pruneStorage(req) {
      const removed = await pruneStorage(daemon, selectionOf(req.selection), req.dryRun);
      return {
        removed: removed.map((item) => ({ category: item.category, id: item.id, bytes: BigInt(item.bytes), lastUsedAt: item.lastUsedAt })),
        reclaimedBytes: BigInt(removed.reduce((total, item) => total + item.bytes, 0)),
        dryRun: req.dryRun,
      };
    },
    async getVersion() {
      return { version: daemon.version, agentProtocol: String(daemon.agentProtocolVersion) };
    },
  });
}

async function createInput(req: CreateSandboxRequest, ctx: HandlerContext): Promise<CreateSandboxInput> {
  const owner = ownerFor(ctx);
  const policy = req.compiledPolicyJson ? { policy: await verifyCompiledPolicy(req.compiledPolicyJson, req.policyHash), hash: req.policyHash } : undefined;
  if (!policy && req.policyHash) throw new CleanroomError("policy_invalid", "a policy hash was sent without its compiled policy");
  return {
    ...(policy ? { policy } : {}),
    backend: req.backend,
    imageRef: req.imageRef,
    resources: { vcpus: req.resources?.vcpus ?? 0, memoryMiB: req.resources?.memoryMib ?? 0, pidsLimit: req.resources?.pidsLimit ?? 0 },
    launchSeconds: req.launchSeconds,
    dangerouslyAllowAll: req.dangerouslyAllowAll,
    labels: req.labels,
    ...(req.repositoryCheckout ? { repository: repositoryInput(req.repositoryCheckout) } : {}),
    ...(req.fromSnapshotId ? { fromSnapshot: req.fromSnapshotId } : {}),
    ...(owner ? { owner } : {}),
  };
}

function selectionOf(selection: { all: boolean; olderThanSeconds: bigint } | undefined): StorageSelection {
  return { all: selection?.all ?? false, olderThanSeconds: Number(selection?.olderThanSeconds ?? 0n) };
}

function repositoryInput(checkout: RepositoryCheckout): RepositoryCheckoutInput {
  if (!checkout.remoteUrl) throw new CleanroomError("invalid_argument", "repository_checkout.remote_url is required");
  return { remoteUrl: checkout.remoteUrl, commit: checkout.commit, ...(checkout.branch ? { branch: checkout.branch } : {}) };
}

/** Streams image progress while `work` runs, then the resulting image. */
async function* withImageProgress(
  ctx: HandlerContext,
  work: (onProgress: (p: ImageProgress) => void) => Promise<ImageRecord>,
): AsyncGenerator<{ progress?: ImageProgressMessage | undefined; image?: ReturnType<typeof imageMessage> }> {
  const updates = createWritableIterable<ImageProgress>();
  const result = work((p) => void updates.write(p).catch(() => undefined)).finally(() => updates.close());
  for await (const p of abortable(updates, ctx)) {
    yield {
      progress: {
        $typeName: "cleanroom.v1.ImageProgress",
        phase: p.phase,
        layerDigest: p.layerDigest ?? "",
        receivedBytes: BigInt(p.receivedBytes ?? 0),
        totalBytes: BigInt(p.totalBytes ?? 0),
        message: p.message ?? "",
      },
    };
  }
  yield { image: imageMessage(await result) };
}

/** Ends iteration when the client goes away, so progress writers never block on a dead stream. */
async function* abortable<T>(source: AsyncIterable<T>, ctx: HandlerContext): AsyncGenerator<T> {
  for await (const item of source) {
    if (ctx.signal.aborted) return;
    yield item;
  }
}
