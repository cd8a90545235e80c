import { create } from "@bufbuild/protobuf";
import { timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  ExecutionKind, ExecutionSchema, ExecutionStatus, ImageSchema, SandboxEventSchema, SandboxSchema, SandboxStatus, SnapshotSchema,
  type Execution, type Image, type RepositoryState, type Sandbox, type SandboxEvent, type Snapshot,
} from "../api/index.ts";
import type { ImageRecord } from "../image/index.ts";
import type { ExecutionRecord, RepositoryRecord, ResourceOwner, SandboxEventRecord, SandboxRecord, SnapshotRecord } from "../sandbox/index.ts";

function timestamp(iso: string | null): Timestamp | undefined {
  return iso ? timestampFromDate(new Date(iso)) : undefined;
}

export function sandboxMessage(record: SandboxRecord): Sandbox {
  return create(SandboxSchema, {
    sandboxId: record.id,
    status: SandboxStatus[record.status],
    backend: record.backend,
    imageRef: record.imageRef,
    imageDigest: record.imageDigest,
    statusReason: record.statusReason,
    createdAt: timestamp(record.createdAt),
    updatedAt: timestamp(record.updatedAt),
    resources: { vcpus: record.resources.vcpus, memoryMib: record.resources.memoryMiB, pidsLimit: record.resources.pidsLimit },
    policyHash: record.policyHash,
    dangerouslyAllowAll: record.dangerouslyAllowAll,
    labels: record.labels,
    ...(record.repository ? { repository: repositoryState(record.repository) } : {}),
    fromSnapshotId: record.fromSnapshot ?? "",
    ...(record.policy?.expose.https ? { exposeHttps: record.policy.expose.https } : {}),
    ...ownerOf(record),
  });
}

function ownerOf(record: { owner?: ResourceOwner }): { owner?: { principalId: string; scope: string } } {
  return record.owner ? { owner: { principalId: record.owner.principalId, scope: record.owner.scope } } : {};
}

function repositoryState(repository: RepositoryRecord): RepositoryState {
  return { $typeName: "cleanroom.v1.RepositoryState", remoteUrl: repository.remoteUrl, commit: repository.commit, branch: repository.branch ?? "", path: repository.path };
}

export function snapshotMessage(record: SnapshotRecord): Snapshot {
  return create(SnapshotSchema, {
    snapshotId: record.id,
    name: record.name,
    sandboxId: record.sandboxId,
    createdAt: timestamp(record.createdAt),
    backend: record.backend,
    imageRef: record.imageRef,
    imageDigest: record.imageDigest,
    policyHash: record.policyHash,
    ...(record.repository ? { repository: repositoryState(record.repository) } : {}),
    diskBytes: BigInt(record.diskBytes),
    ...ownerOf(record),
  });
}

export function executionMessage(record: ExecutionRecord): Execution {
  return create(ExecutionSchema, {
    executionId: record.id,
    ...ownerOf(record),
    sandboxId: record.sandboxId,
    status: ExecutionStatus[record.status],
    kind: record.interactive ? ExecutionKind.INTERACTIVE : ExecutionKind.BATCH,
    command: record.command,
    cwd: record.cwd,
    tty: record.tty,
    exitCode: record.exitCode ?? 0,
    signal: record.signal,
    statusReason: record.statusReason,
    createdAt: timestamp(record.createdAt),
    startedAt: timestamp(record.startedAt),
    finishedAt: timestamp(record.finishedAt),
    stdoutBytes: BigInt(record.stdoutBytes),
    stderrBytes: BigInt(record.stderrBytes),
  });
}

export function eventMessage(record: SandboxEventRecord): SandboxEvent {
  return create(SandboxEventSchema, {
    sequence: BigInt(record.sequence),
    sandboxId: record.sandboxId,
    time: timestamp(record.time),
    type: record.type,
    message: record.message,
    reasonCode: record.reasonCode,
    attributes: record.attributes,
  });
}

export function imageMessage(record: ImageRecord): Image {
  return create(ImageSchema, {
    ref: record.ref,
    digest: record.digest,
    sizeBytes: BigInt(record.sizeBytes),
    createdAt: timestamp(record.createdAt),
    platform: record.platform,
    layerCount: record.layers.length,
  });
}
