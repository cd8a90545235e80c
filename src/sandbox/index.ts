export { SandboxSupervisor, type SupervisorOptions, type CreateSandboxInput, type CreateProgress } from "./supervisor.ts";
export type { ExecutionInput, ExecutionStreamItem } from "./execution-runner.ts";
export type { OutputChunk, OutputStream } from "./output-log.ts";
export type {
  SandboxRecord, SandboxStatus, SandboxResources, ExecutionRecord, ExecutionStatus, SandboxEventRecord,
} from "./records.ts";
