import { CleanroomError } from "../../errors/index.ts";
import type { SandboxSource, SourceFlags } from "../sandbox-source.ts";
import type { Exposure } from "../../expose/index.ts";
import { Cleanroom, newTraceContext, type CreateProgressEvent, type ExecutionHandle, type ExitEvent, type SandboxHandle } from "../../sdk/index.ts";
import { connectClient } from "../client.ts";

export interface ExecFlags {
  host?: string;
  chdir?: string;
  in?: string;
  keep?: boolean;
  rm?: boolean;
  image?: string;
  repoUrl?: string;
  repoCommit?: string;
  backend?: string;
  /** a snapshot id: the new sandbox's filesystem and policy */
  from?: string;
  /** [host:]guest ports forwarded while the command runs */
  expose?: string[];
  /** [name:]port HTTPS routes served while the command runs; "" = the policy's expose.https routes */
  exposeHttps?: string[];
  env?: string[];
  tty?: boolean;
  stdin?: boolean; // commander's --no-stdin sets this to false
  printSandboxId?: boolean;
  printTraceId?: boolean;
  launchSeconds?: string;
  dangerouslyAllowAll?: boolean;
  /** workspace sync around the command (--copy-in, --copy-out, --sync) */
  copyIn?: boolean;
  copyOut?: boolean;
}

/** Exit code when Cleanroom itself (not the workload) failed to run the command, as `docker run` does. */
export const EXEC_FAILURE_EXIT = 125;

/**
 * `exec` and `console`: run a command in a new sandbox (removed afterwards unless --keep) or in `--in <id>`,
 * stream its output, forward stdin, Ctrl-C and terminal size, and return the workload's exit code.
 */
export async function runExec(args: string[], flags: ExecFlags, mode: { console: boolean }): Promise<number> {
  const command = args.length ? args : mode.console ? ["/bin/sh"] : [];
  if (!command.length) throw new CleanroomError("invalid_argument", "no command given; put it after `--`, e.g. `cleanroom exec -- echo hello`");
  // one trace for the whole command: the daemon's spans and log lines carry its id
  const trace = newTraceContext();
  if (flags.printTraceId) process.stderr.write(`trace_id: ${trace.traceId}\n`);
  const client = connectClient(flags, { traceparent: trace.traceparent });
  const tty = mode.console || Boolean(flags.tty);
  const attachStdin = flags.stdin !== false;
  const syncRoot = flags.copyIn || flags.copyOut ? await checkoutRootForSync(flags.chdir) : undefined;
  const exposing = await exposureCommandsFor(flags);
  const created = !flags.in;
  const sandbox = flags.in ? client.sandbox(flags.in) : await createFromSource(client, flags, flags.from ? {} : await sandboxSourceWithWarnings(flags));
  if (flags.printSandboxId) process.stderr.write(`${sandbox.id}\n`);
  let exposure: Exposure | undefined;
  try {
    const workspace = syncRoot ? await import("./workspace.ts") : undefined;
    if (workspace && syncRoot && flags.copyIn) await workspace.copyInAround(client, sandbox.id, syncRoot);
    exposure = await exposing?.startSandboxExposure(client, sandbox, flags);
    const execution = await sandbox.start(command, {
      env: resolveEnv(flags.env ?? []),
      stdin: attachStdin,
      ...(tty ? { tty: terminalSize() } : {}),
    });
    const exitCode = await attach(execution, { tty, attachStdin });
    if (workspace && syncRoot && flags.copyOut && exitCode !== 130) {
      const copied = await workspace.copyOutAround(client, sandbox.id, syncRoot);
      if (!copied && exitCode === 0) return 1;
    }
    return exitCode;
  } finally {
    await exposure?.close();
    if ((created && !flags.keep) || flags.rm) {
      await sandbox.terminate({ wait: false }).catch(() => undefined);
      if (syncRoot) await (await import("../../workspace/index.ts")).pruneBindings(syncRoot, (id) => id !== sandbox.id).catch(() => undefined);
    }
  }
}

/**
 * The exposure commands, loaded only when the flags ask to expose something; the flags are checked here, before a
 * sandbox is made for them.
 */
export async function exposureCommandsFor(flags: Pick<ExecFlags, "expose" | "exposeHttps">): Promise<typeof import("./expose.ts") | undefined> {
  if (!flags.expose?.length && !flags.exposeHttps?.length) return undefined;
  const exposing = await import("./expose.ts");
  exposing.checkExposeFlags(flags);
  return exposing;
}

/** The flags that shape a new sandbox (exec, console, create). */
export type NewSandboxFlags = Pick<ExecFlags, "image" | "backend" | "launchSeconds" | "dangerouslyAllowAll" | "copyIn" | "from">;

/** A new sandbox from the flags and its repository and policy (see sandbox-source.ts). */
export function createFromSource(client: Cleanroom, flags: NewSandboxFlags, source: Pick<SandboxSource, "policy" | "repository">): Promise<SandboxHandle> {
  if (flags.copyIn && !source.repository) throw new CleanroomError("failed_precondition", "--copy-in needs a repository in the sandbox: a committed cleanroom.yaml here that enables it, or --repo-url");
  return client.createSandbox({
    ...(source.policy ? { policy: source.policy } : {}),
    ...(source.repository ? { repository: source.repository } : {}),
    ...(flags.image ? { image: flags.image } : {}),
    ...(flags.backend ? { backend: flags.backend } : {}),
    ...(flags.launchSeconds ? { launchSeconds: parsePositiveInt(flags.launchSeconds, "--launch-seconds") } : {}),
    ...(flags.dangerouslyAllowAll ? { dangerouslyAllowAll: true } : {}),
    ...(flags.from ? { fromSnapshot: flags.from } : {}),
    // a checkout may run dependency blocks: their cache outcome is always shown, the other steps on a terminal
    ...(source.repository ? { onProgress: showCreateProgress } : {}),
  });
}

function showCreateProgress(progress: CreateProgressEvent): void {
  if (progress.block) process.stderr.write(`cleanroom: ${progress.message} [${formatMs(progress.block.durationMs)}]\n`);
  else if (process.stderr.isTTY) process.stderr.write(`cleanroom: ${progress.message}\n`);
}

function formatMs(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** The checkout --copy-in/--copy-out sync with: the one around --chdir or here. */
export async function checkoutRootForSync(chdir: string | undefined): Promise<string> {
  const { findCheckoutRoot } = await import("../../workspace/index.ts");
  const root = await findCheckoutRoot(chdir ?? process.cwd());
  if (!root) throw new CleanroomError("failed_precondition", `--copy-in and --copy-out need a Git checkout; ${chdir ?? process.cwd()} is not inside one`);
  return root;
}

/** The repository and policy of a new sandbox (see sandbox-source.ts); warnings go to stderr. */
export async function sandboxSourceWithWarnings(flags: SourceFlags): Promise<SandboxSource> {
  const { sandboxSource } = await import("../sandbox-source.ts");
  const source = await sandboxSource(flags);
  for (const warning of source.warnings) process.stderr.write(`cleanroom: warning: ${warning}\n`);
  return source;
}

async function attach(execution: ExecutionHandle, opts: { tty: boolean; attachStdin: boolean }): Promise<number> {
  const rawTerminal = opts.tty && process.stdin.isTTY;
  const detach = new AbortController();
  let interrupts = 0;
  const onInterrupt = () => {
    interrupts++;
    if (interrupts === 1) {
      process.stderr.write("\ncleanroom: canceling the execution (Ctrl-C again to detach)\n");
      void execution.cancel(2).catch(() => undefined);
    } else {
      detach.abort();
    }
  };
  const onResize = () => void execution.resize(process.stdout.rows, process.stdout.columns).catch(() => undefined);
  process.on("SIGINT", onInterrupt);
  if (rawTerminal) {
    process.stdin.setRawMode(true);
    process.stdout.on("resize", onResize);
  }
  const stdinDone = opts.attachStdin ? pumpStdin(execution) : Promise.resolve();
  try {
    let exit: ExitEvent | undefined;
    for await (const event of execution.events({ signal: detach.signal })) {
      if ("stream" in event) await write(event.stream === "stdout" ? process.stdout : process.stderr, event.data);
      else exit = event;
    }
    if (!exit) throw new CleanroomError("execution_failed", `lost the output stream of execution ${execution.id} before it finished`);
    if (exit.status === "FAILED" && exit.exitCode === 0) {
      throw new CleanroomError("execution_failed", `execution ${execution.id} failed: ${exit.statusReason}`);
    }
    if (exit.status === "TIMED_OUT") process.stderr.write(`cleanroom: execution ${execution.id} timed out\n`);
    for (const warning of exit.networkWarnings) process.stderr.write(`cleanroom: warning: ${warning}\n`);
    return exit.exitCode;
  } catch (err) {
    if (detach.signal.aborted) {
      process.stderr.write(`\ncleanroom: detached; execution ${execution.id} keeps running\n`);
      return 130;
    }
    throw err;
  } finally {
    process.off("SIGINT", onInterrupt);
    if (rawTerminal) {
      process.stdin.setRawMode(false);
      process.stdout.off("resize", onResize);
    }
    process.stdin.destroy();
    void stdinDone;
  }
}

async function pumpStdin(execution: ExecutionHandle): Promise<void> {
  try {
    for await (const chunk of process.stdin) await execution.writeStdin(chunk as Buffer);
    await execution.closeStdin();
  } catch {
    // the execution finished or stdin went away; nothing more to send
  }
}

function write(stream: NodeJS.WriteStream, data: Uint8Array): Promise<void> | void {
  if (stream.write(data)) return;
  return new Promise((resolve) => stream.once("drain", resolve));
}

function terminalSize(): { rows: number; cols: number } {
  return process.stdout.isTTY ? { rows: process.stdout.rows, cols: process.stdout.columns } : { rows: 24, cols: 80 };
}

/** `-e KEY=VAL` passes as is; `-e KEY` takes KEY's value from this environment (skipped if unset). */
export function resolveEnv(entries: string[]): string[] {
  const out: string[] = [];
  for (const entry of entries) {
    const eq = entry.indexOf("=");
    const key = eq < 0 ? entry : entry.slice(0, eq);
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) throw new CleanroomError("invalid_argument", `-e ${entry}: "${key}" is not a valid environment variable name`);
    if (eq >= 0) out.push(entry);
    else if (process.env[key] !== undefined) out.push(`${key}=${process.env[key]}`);
  }
  return out;
}

export function parsePositiveInt(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new CleanroomError("invalid_argument", `${flag} ${value}: expected a positive whole number`);
  return n;
}
