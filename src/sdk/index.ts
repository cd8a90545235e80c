export {
  Cleanroom, SandboxHandle, ExecutionHandle, defaultHost, enumName, readTokenFile,
  type CleanroomOptions, type CreateSandboxOptions, type CreateProgressEvent, type RepositoryCheckoutOptions, type StartOptions, type ExecResult, type ExecutionOutcome, type OutputEvent, type ExitEvent,
} from "./client.ts";
export { newTraceContext, type TraceContext } from "./trace-context.ts";
export { CleanroomError, isCleanroomError, type ReasonCode } from "../errors/index.ts";
export { archivePaths, downloadFile, extractArchive, statPath, uploadFile, type SandboxEntry } from "./sandbox-files.ts";
