export { Cleanroom, SandboxHandle, ExecutionHandle, type CleanroomOptions, type CreateSandboxOptions, type StartOptions, type ExecResult, type OutputEvent, type ExitEvent } from "./client.ts";
export { defaultHost } from "./transport.ts";
export { CleanroomError, isCleanroomError, type ReasonCode } from "../errors/index.ts";
