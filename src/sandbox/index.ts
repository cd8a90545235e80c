export { SandboxSupervisor, type SupervisorOptions, type CreateSandboxInput, type CreateProgress } from "./supervisor.ts";
export type { RepositoryCheckoutInput, RepositorySource } from "./repository-checkout.ts";
export type { ExecutionInput, ExecutionStreamItem } from "./execution-runner.ts";
export type { OutputChunk, OutputStream } from "./output-log.ts";
export type { SandboxObserver, TraceParent } from "./observer.ts";
export type {
  SandboxRecord, SandboxCreateTimings, ExecutionTimings, SnapshotRecord, RepositoryRecord, ResourceOwner, SandboxStatus, SandboxResources, ExecutionRecord, ExecutionStatus, SandboxEventRecord,
} from "./records.ts";
