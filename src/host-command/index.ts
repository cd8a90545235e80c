/** Running host tools (mount, runc, debootstrap, …): argument arrays, timeouts, bounded output, full stderr in errors. */
export { runCommand, tryCommand, describeFailure, CommandError, type RunOptions, type RunResult, type CommandResult } from "./run-command.ts";
