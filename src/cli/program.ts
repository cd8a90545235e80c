import { Command, Option } from "commander";
import { EXEC_OPTIONS } from "./exec-options.ts";
import { resolveClientFlags, type ClientFlags, type GlobalOptions } from "./client.ts";
import { reportError } from "./output.ts";

const CLIENT_VERSION = "0.1.0";

/** Runs a command action, mapping every failure to a message and exit code at this one edge. */
function action<A extends unknown[]>(run: (...args: A) => Promise<number>, failureExit = 1) {
  return async (...args: A) => {
    const command = args[args.length - 1] as Command;
    const json = Boolean(command.opts().json);
    try {
      process.exitCode = await run(...args);
    } catch (err) {
      reportError(err, json);
      process.exitCode = failureExit;
    }
  };
}

/** Adds the resolved daemon endpoint, CA and token (the global options) to a command's flags. */
async function withHost<T extends object>(command: Command, flags: T): Promise<T & ClientFlags> {
  const globals = command.optsWithGlobals() as GlobalOptions;
  return { ...flags, ...(await resolveClientFlags(globals)) };
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** Registers the shared exec/console option table (see exec-options.ts) on a commander command. */
function execOptions(command: Command, forConsole: boolean): Command {
  for (const spec of EXEC_OPTIONS) {
    if (forConsole && spec.execOnly) continue;
    const flags = `${spec.short ? `-${spec.short}, ` : ""}--${spec.long}${spec.value ? ` <${spec.value}>` : ""}`;
    if (spec.repeatable) command.option(flags, spec.help, collect, []);
    else command.option(flags, spec.help);
  }
  return command.passThroughOptions();
}

export function buildProgram(): Command {
  const program = new Command("cleanroom")
    .description("Run untrusted code in isolated Linux sandboxes with deny-by-default egress")
    .addOption(new Option("--host <url>", "daemon endpoint: unix:///path, http://127.0.0.1:port, https://host:port").env("CLEANROOM_HOST"))
    .addOption(new Option("--tls-ca <file>", "CA certificates (PEM) that vouch for an https daemon").env("CLEANROOM_TLS_CA"))
    .addOption(new Option("--auth-token-file <file>", "file holding the bearer token").env("CLEANROOM_AUTH_TOKEN_FILE"))
    .option("--auth-token-env <name>", "environment variable holding the bearer token", "CLEANROOM_AUTH_TOKEN")
    .enablePositionalOptions()
    .showHelpAfterError()
    .configureOutput({ outputError: (str, write) => write(`cleanroom: ${str.replace(/^error: /, "")}`) });
  program.exitOverride((err) => {
    process.exit(err.exitCode === 0 ? 0 : 2);
  });

  // normally served by main.ts's fast path; here for --help and anything the fast path hands over
  const execAction = (console: boolean) =>
    action(async (args: string[], flags: Record<string, unknown>, command: Command) => {
      const { runExec } = await import("./commands/exec.ts");
      const inId = (flags.in ?? flags.sandboxId) as string | undefined;
      const sync = { copyIn: Boolean(flags.copyIn || flags.sync), copyOut: Boolean(flags.copyOut || flags.sync) };
      return runExec(args, await withHost(command, { ...flags, ...sync, ...(inId ? { in: inId } : {}) }), { console });
    }, 125);

  execOptions(program.command("exec").description("run a command in a sandbox and return its exit code").argument("[command...]"), false)
    .action(execAction(false));
  execOptions(program.command("console").description("interactive shell (always a terminal) in a sandbox").argument("[command...]"), true)
    .action(execAction(true));

  const createCommand = (cmd: Command, readPolicy: boolean) =>
    (readPolicy
      ? cmd.option("-c, --chdir <dir>", "repository whose cleanroom.yaml applies (default: the current directory)")
        .option("--repo-url <url>", "check out this repository (https or ssh URL); its policy comes from the commit")
        .option("--repo-commit <rev>", "commit to check out: a sha, a tag, a branch or latest")
        .option("--copy-in", "copy local changes and unpushed commits into the new sandbox")
      : cmd)
      .option("--image <ref>", "image (default: the locally built base image)")
      .option("--backend <name>", "isolation backend")
      .option("--from <snapshot-id>", "make the sandbox from a snapshot (its filesystem and policy)")
      .option("--launch-seconds <n>", "how long the sandbox may take to start")
      .option("--dangerously-allow-all", "do not restrict network egress")
      .option("--json", "print the sandbox as JSON")
      .option("--expose <[host:]guest>", "then forward 127.0.0.1:host to the guest port until interrupted; the sandbox stays (repeatable)", collect, [])
      .option("--expose-https <[name:]port>", "then serve https://<name>.cleanroom.localhost:8143 from the guest port until interrupted; bare: the policy's routes (repeatable)", collect, [])
      .action(action(async (flags: Record<string, unknown>, command: Command) => (await import("./commands/sandbox.ts")).createSandbox(await withHost(command, flags), { readPolicy })));
  createCommand(program.command("create").description("create a sandbox for this repository and print its id"), true);

  const sandbox = program.command("sandbox").description("manage sandboxes");
  createCommand(sandbox.command("create").description("create a repository-agnostic sandbox and print its id"), false);
  sandbox.command("ls").alias("list").description("list sandboxes").option("--all", "include stopped and failed").option("--json", "JSON output")
    .action(action(async (flags: Record<string, unknown>, command: Command) => (await import("./commands/sandbox.ts")).listSandboxes(await withHost(command, flags))));
  sandbox.command("inspect").argument("<sandbox-id>").description("show a sandbox and its recent events").option("--json", "JSON output")
    .action(action(async (id: string, flags: Record<string, unknown>, command: Command) => (await import("./commands/sandbox.ts")).inspectSandbox(id, await withHost(command, flags))));
  sandbox.command("suspend").argument("<sandbox-id>").description("freeze a sandbox: no CPU, memory kept; exec, file operations and snapshots wake it")
    .action(action(async (id: string, flags: Record<string, unknown>, command: Command) => (await import("./commands/sandbox.ts")).setSuspended(id, true, await withHost(command, flags))));
  sandbox.command("resume").argument("<sandbox-id>").description("wake a suspended sandbox")
    .action(action(async (id: string, flags: Record<string, unknown>, command: Command) => (await import("./commands/sandbox.ts")).setSuspended(id, false, await withHost(command, flags))));
  sandbox.command("rm").alias("terminate").argument("<sandbox-id...>").description("terminate sandboxes and release their host resources")
    .action(action(async (ids: string[], flags: Record<string, unknown>, command: Command) => (await import("./commands/sandbox.ts")).removeSandboxes(ids, await withHost(command, flags))));

  program.command("cp").alias("copy").argument("<src>").argument("<dst>").description("copy files between here and a sandbox; one side is <sandbox-id>:/absolute/path (keeps mode and mtime)")
    .option("--max-bytes <size>", "refuse to copy more than this (e.g. 512MiB)")
    .action(action(async (src: string, dst: string, flags: Record<string, unknown>, command: Command) => (await import("./commands/copy.ts")).copy(src, dst, await withHost(command, flags))));

  program.command("port-forward").argument("<ports...>", "[host:]guest, e.g. 8080:3000 or 3000").description("forward 127.0.0.1 ports here to ports inside a sandbox until interrupted")
    .requiredOption("--in <sandbox-id>", "the sandbox")
    .action(action(async (ports: string[], flags: Record<string, unknown>, command: Command) => (await import("./commands/expose.ts")).portForward(ports, await withHost(command, flags))));
  program.command("expose").description("forward TCP ports and serve HTTPS routes from here to a sandbox until interrupted")
    .requiredOption("--in <sandbox-id>", "the sandbox")
    .option("--expose <[host:]guest>", "forward 127.0.0.1:host to the guest port (repeatable)", collect, [])
    .option("--expose-https <[name:]port>", "serve https://<name>.cleanroom.localhost:8143 from the guest port; bare: the policy's expose.https routes (repeatable)", collect, [])
    .action(action(async (flags: Record<string, unknown>, command: Command) => (await import("./commands/expose.ts")).exposeExisting(await withHost(command, flags))));
  const ca = program.command("ca").description("the local certificate authority of HTTPS exposure (name-constrained to cleanroom.localhost)");
  const caAction = (name: "print" | "path" | "install" | "uninstall") => action(async () => (await import("./commands/expose.ts")).exposureCa(name));
  ca.command("print").description("print the CA certificate (PEM) to trust it somewhere, e.g. curl --cacert or a browser").action(caAction("print"));
  ca.command("path").description("print where the CA certificate is").action(caAction("path"));
  ca.command("install").description("trust the CA system-wide (root)").action(caAction("install"));
  ca.command("uninstall").description("stop trusting the CA system-wide and delete it; the next HTTPS exposure makes a new one").action(caAction("uninstall"));

  const workspace = program.command("workspace").description("sync this Git checkout's working tree with a sandbox holding the same repository");
  const workspaceAction = (name: "workspaceCopyIn" | "workspaceCopyOut" | "workspaceDiff") =>
    action(async (id: string, flags: Record<string, unknown>, command: Command) => (await import("./commands/workspace.ts"))[name](id, await withHost(command, flags)));
  workspace.command("copy-in").argument("<sandbox-id>").description("send tracked and unignored local changes, and local commits the sandbox lacks, into the sandbox")
    .option("-c, --chdir <dir>", "the checkout (default: the one around the current directory)").option("--dry-run", "only list what would be sent")
    .action(workspaceAction("workspaceCopyIn"));
  workspace.command("diff").argument("<sandbox-id>").description("show the sandbox's changes since it last matched this checkout")
    .option("-c, --chdir <dir>", "the checkout (default: the one around the current directory)")
    .action(workspaceAction("workspaceDiff"));
  workspace.command("copy-out").argument("<sandbox-id>").description("apply the sandbox's changes to this checkout; refuses local conflicts unless --force")
    .option("-c, --chdir <dir>", "the checkout (default: the one around the current directory)").option("--dry-run", "only list what would be applied")
    .option("--force", "let the sandbox's version win where both sides changed a file")
    .action(workspaceAction("workspaceCopyOut"));

  const execution = program.command("execution").description("inspect executions");
  execution.command("ls").alias("list").option("--sandbox-id <id>", "only this sandbox's").option("--all", "include finished").option("--json", "JSON output")
    .action(action(async (flags: Record<string, unknown>, command: Command) => (await import("./commands/execution.ts")).listExecutions(await withHost(command, flags))));
  execution.command("inspect").argument("<execution-id>").option("--json", "JSON output")
    .action(action(async (id: string, flags: Record<string, unknown>, command: Command) => (await import("./commands/execution.ts")).inspectExecution(id, await withHost(command, flags))));

  const snapshot = program.command("snapshot").description("keep a sandbox's filesystem; --from makes new sandboxes from it");
  const snapshotCommand = async () => import("./commands/snapshot.ts");
  snapshot.command("create").argument("<sandbox-id>").description("snapshot a READY sandbox's filesystem").option("--name <name>", "a name to find it by").option("--json", "JSON output")
    .action(action(async (id: string, flags: Record<string, unknown>, command: Command) => (await snapshotCommand()).createSnapshot(id, await withHost(command, flags))));
  snapshot.command("ls").alias("list").description("list snapshots").option("--json", "JSON output")
    .action(action(async (flags: Record<string, unknown>, command: Command) => (await snapshotCommand()).listSnapshots(await withHost(command, flags))));
  snapshot.command("inspect").argument("<snapshot-id>").option("--json", "JSON output")
    .action(action(async (id: string, flags: Record<string, unknown>, command: Command) => (await snapshotCommand()).inspectSnapshot(id, await withHost(command, flags))));
  snapshot.command("rm").argument("<snapshot-id...>").description("delete snapshots no live sandbox is made from")
    .action(action(async (ids: string[], flags: Record<string, unknown>, command: Command) => (await snapshotCommand()).removeSnapshots(ids, await withHost(command, flags))));

  const image = program.command("image").description("manage the daemon's images");
  image.command("pull").argument("<ref>").option("--json", "JSON output")
    .action(action(async (ref: string, flags: Record<string, unknown>, command: Command) => (await import("./commands/image.ts")).pullImage(ref, await withHost(command, flags))));
  image.command("import").argument("<ref>").argument("<tar>", "OCI image-layout tar on the daemon's host").option("--json", "JSON output")
    .action(action(async (ref: string, tar: string, flags: Record<string, unknown>, command: Command) => (await import("./commands/image.ts")).importImage(ref, tar, await withHost(command, flags))));
  image.command("ls").alias("list").option("--json", "JSON output")
    .action(action(async (flags: Record<string, unknown>, command: Command) => (await import("./commands/image.ts")).listImages(await withHost(command, flags))));
  image.command("rm").argument("<ref...>", "name:tag, name@sha256:… or sha256:…")
    .action(action(async (refs: string[], flags: Record<string, unknown>, command: Command) => (await import("./commands/image.ts")).removeImages(refs, await withHost(command, flags))));

  program.command("doctor").description("check the host and report which backends are usable").option("--backend <name>").option("--json", "JSON output")
    .action(action(async (flags: Record<string, unknown>, command: Command) => (await import("./commands/host.ts")).doctor(await withHost(command, flags))));
  const system = program.command("system").description("host-level maintenance");
  system.command("warmup").description("build the default base image and unpack it, so the first sandbox starts fast").option("--backend <name>").option("--json", "JSON output")
    .action(action(async (flags: Record<string, unknown>, command: Command) => (await import("./commands/host.ts")).warmup(await withHost(command, flags))));
  system.command("df").description("host storage by category, and what prune would free").option("--json", "JSON output")
    .action(action(async (flags: Record<string, unknown>, command: Command) => (await import("./commands/storage.ts")).diskUsage(await withHost(command, flags))));
  system.command("prune").description("remove terminated sandboxes, their artifacts and superseded caches (--all: everything no live sandbox uses)")
    .option("--dry-run", "only list what would be removed").option("--force", "do not ask (needed without a terminal)")
    .option("--all", "also snapshots, block caches, images, mirrors and the content cache that no live sandbox uses")
    .option("--older-than <age>", "only what was last used longer ago, e.g. 7d, 12h").option("--json", "JSON output")
    .action(action(async (flags: Record<string, unknown>, command: Command) => (await import("./commands/storage.ts")).prune(await withHost(command, flags))));
  program.command("version").option("--json", "JSON output")
    .action(action(async (flags: Record<string, unknown>, command: Command) => (await import("./commands/host.ts")).version(await withHost(command, flags), CLIENT_VERSION)));

  const policy = program.command("policy").description("the repository's cleanroom.yaml");
  policy.command("validate").description("validate and compile the policy; prints its source and hash")
    .option("-c, --chdir <dir>", "repository directory (default: the current directory)").option("--json", "JSON output, including the compiled policy")
    .action(action(async (flags: Record<string, unknown>) => (await import("./commands/policy.ts")).validatePolicy(flags)));

  const config = program.command("config").description("the runtime config file");
  config.command("init").description("write a commented starter config").option("--path <file>", "default: $XDG_CONFIG_HOME/cleanroom/config.yaml")
    .option("--force", "overwrite an existing file").option("--default-backend <name>", "linux, gvisor or qemu")
    .action(action(async (flags: Record<string, unknown>) => (await import("./commands/config.ts")).initConfig(flags)));
  config.command("validate").description("check the config file; prints its path").option("--path <file>").option("--json", "JSON output")
    .action(action(async (flags: Record<string, unknown>) => (await import("./commands/config.ts")).validateConfig(flags)));

  const auth = program.command("auth").description("shared-server authentication and authorization");
  auth.command("check").description("verify a token and decide one action with the config's issuers and policy, without a server; exit 1 when denied")
    .requiredOption("--token-file <file>", "the bearer token (- reads stdin)").requiredOption("--action <action>", "e.g. sandbox.create, sandbox.file.read, execution.create")
    .option("--resource <kind>", "sandbox, execution or snapshot (default: the action's)").option("--resource-id <id>", "an existing resource: its owner must be the caller")
    .option("--owner-principal-id <id>", "the resource's owner").option("--owner-scope <scope>", "the owner's scope")
    .option("--request <file>", "JSON of the request.* a grant condition sees").option("--config <file>", "runtime config (default: $XDG_CONFIG_HOME/cleanroom/config.yaml)")
    .option("--policy-file <file>", "bindings to use instead of the config's").option("--json", "JSON output")
    .action(action(async (flags: Record<string, unknown>) => (await import("./commands/auth.ts")).authCheck(flags)));

  program.command("serve").description("run the daemon (root)")
    .option("--listen <url>", "unix:///path, http://127.0.0.1:port or https://127.0.0.1:port (default unix:///var/run/cleanroom/cleanroom.sock)")
    .option("--tls-cert <file>", "certificate (PEM) of an https:// listener")
    .option("--tls-key <file>", "private key (PEM) of an https:// listener")
    .option("--gateway-listen <addr>", "where sandboxes reach the gateway: :PORT on every address, IPV4:PORT, :0 ephemeral (default :8170; env CLEANROOM_GATEWAY_LISTEN)")
    .option("--log-level <level>", "trace|debug|info|warn|error")
    .option("--warm-pool <n>", "spare sandboxes of the default shape kept ready, 0-16 (default 1; env CLEANROOM_WARM_POOL)")
    .option("--pprof-listen <host:port>", "serve /debug/heap-snapshot and /debug/cpu-profile?seconds=N on this loopback address")
    .action(action(async (flags: Record<string, unknown>) => (await import("./commands/serve.ts")).serve(flags)));

  const daemon = program.command("daemon").description("run the daemon as a service: a systemd unit, or supervised where systemd does not run");
  const daemonCommand = async () => import("./commands/daemon.ts");
  daemon.command("install").description("install cleanroom.service (systemd: enable and start it)")
    .option("--listen <url>", "as serve --listen").option("--tls-cert <file>", "as serve --tls-cert").option("--tls-key <file>", "as serve --tls-key")
    .option("--gateway-listen <addr>", "as serve --gateway-listen").option("--log-level <level>", "trace|debug|info|warn|error")
    .option("--init-config", "also write a starter runtime config if there is none").option("--force", "replace an installed unit with other settings")
    .option("--restart", "restart a running daemon onto the new settings")
    .action(action(async (flags: Record<string, unknown>) => (await daemonCommand()).installDaemon(flags)));
  daemon.command("uninstall").description("stop the daemon and remove the service (the config and the daemon's data stay)")
    .action(action(async () => (await daemonCommand()).uninstallDaemon()));
  daemon.command("start").description("start the daemon (supervised: and wait until it listens)").option("--json", "print the status as JSON")
    .action(action(async (flags: Record<string, unknown>) => (await daemonCommand()).startDaemon(flags)));
  daemon.command("stop").description("stop the daemon (sandboxes keep running and are reconciled on the next start)")
    .action(action(async () => (await daemonCommand()).stopDaemon()));
  daemon.command("restart").description("stop and start the daemon").option("--json", "print the status as JSON")
    .action(action(async (flags: Record<string, unknown>) => (await daemonCommand()).restartDaemon(flags)));
  daemon.command("status").description("running or stopped, pids, uptime, restarts, listen address; exit 0 running, 3 stopped, 4 not installed")
    .option("--json", "JSON output")
    .action(action(async (flags: Record<string, unknown>) => (await daemonCommand()).daemonStatus(flags)));
  daemon.command("logs").description("the daemon's log (journalctl under systemd)").option("-n, --lines <n>", "how many of the last lines", "100")
    .option("-f, --follow", "keep printing what it logs until interrupted")
    .action(action(async (flags: Record<string, unknown>) => (await daemonCommand()).daemonLogs(flags)));
  daemon.command("supervise", { hidden: true }).description("the supervisor `daemon start` runs where systemd does not")
    .action(action(async () => (await daemonCommand()).superviseDaemon()));
  return program;
}
