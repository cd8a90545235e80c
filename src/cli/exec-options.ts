// The options of `exec` and `console`, defined once: the fast path parses them with node:util's parseArgs,
// and the commander program (help, every other command) registers the same table.
import { parseArgs } from "node:util";
import type { GlobalOptions } from "./client.ts";
import type { ExecFlags } from "./commands/exec.ts";

export interface ExecOptionSpec {
  long: string;
  short?: string;
  /** placeholder of the value; absent for a boolean flag */
  value?: string;
  repeatable?: boolean;
  /** `--tty` belongs to exec only: console always has a terminal */
  execOnly?: boolean;
  help: string;
}

export const EXEC_OPTIONS: readonly ExecOptionSpec[] = [
  { long: "chdir", short: "c", value: "dir", help: "repository whose cleanroom.yaml applies (default: the current directory)" },
  { long: "in", value: "sandbox-id", help: "run in an existing sandbox instead of a new one" },
  { long: "sandbox-id", value: "sandbox-id", help: "alias of --in" },
  { long: "image", value: "ref", help: "image for a new sandbox (default: the locally built base image)" },
  { long: "repo-url", value: "url", help: "check out this repository (https or ssh URL) instead of the one here; its policy comes from the commit" },
  { long: "repo-commit", value: "rev", help: "commit to check out: a sha, a tag, a branch or latest (default: HEAD here, latest with --repo-url)" },
  { long: "copy-in", help: "copy local changes and unpushed commits into the sandbox before the command" },
  { long: "copy-out", help: "copy the sandbox's workspace changes to this checkout after the command" },
  { long: "sync", help: "both --copy-in and --copy-out" },
  { long: "backend", value: "name", help: "isolation backend for a new sandbox" },
  { long: "from", value: "snapshot-id", help: "make the new sandbox from a snapshot (its filesystem and policy)" },
  { long: "keep", help: "keep a new sandbox after the command finishes" },
  { long: "rm", help: "remove the sandbox after the command finishes, also with --in" },
  { long: "env", short: "e", value: "KEY[=VAL]", repeatable: true, help: "set an environment variable (repeatable); KEY alone copies it from here" },
  { long: "no-stdin", short: "n", help: "do not forward standard input" },
  { long: "tty", execOnly: true, help: "allocate a terminal" },
  { long: "print-sandbox-id", help: "print the sandbox id on stderr" },
  { long: "print-trace-id", help: "print the trace id (trace_id: …) on stderr before the command's output" },
  { long: "launch-seconds", value: "n", help: "how long a new sandbox may take to start" },
  { long: "dangerously-allow-all", help: "do not restrict the new sandbox's network egress" },
  { long: "expose", value: "[host:]guest", repeatable: true, help: "forward 127.0.0.1:host here to the guest port while the command runs (repeatable)" },
  { long: "expose-https", value: "[name:]port", repeatable: true, help: "serve https://<name>.cleanroom.localhost:8143 from the guest port while the command runs; bare: the policy's expose.https routes (repeatable)" },
];

/** `--expose-https` takes its value only when the next word looks like one: bare, it means the policy's routes. */
const HTTPS_EXPOSURE_VALUE = /^(?:[^\s:]+:)?\d{1,5}$/;

function bareExposeHttps(args: readonly string[], i: number): boolean {
  return args[i] === "--expose-https" && !HTTPS_EXPOSURE_VALUE.test(args[i + 1] ?? "");
}

/**
 * Spells a bare `--expose-https` as `--expose-https=` (an empty value) so both option parsers take it as given
 * without a value; nothing after `--` is touched.
 */
export function spellBareExposeHttps(args: readonly string[]): string[] {
  const end = args.indexOf("--");
  const options = end < 0 ? args : args.slice(0, end);
  return [...options.map((arg, i) => (bareExposeHttps(options, i) ? "--expose-https=" : arg)), ...(end < 0 ? [] : args.slice(end))];
}

/** A command line the fast path can run without loading the full program. */
export interface FastExec {
  console: boolean;
  /** the global options before the command name, as given */
  globals: GlobalOptions;
  flags: ExecFlags;
  command: string[];
}

const GLOBAL_KEYS: Record<string, keyof GlobalOptions> = { "--host": "host", "--tls-ca": "tlsCa", "--auth-token-file": "authTokenFile", "--auth-token-env": "authTokenEnv" };

/** A mistake in the command line: exits 2 like commander's usage errors. */
export class UsageError extends Error {}

/**
 * Recognises `[--host URL] exec|console [options] [--] command…`. Returns undefined for anything else
 * (other commands, --help), which the full commander program handles.
 */
export function matchFastExec(argv: readonly string[]): FastExec | undefined {
  let i = 0;
  const globals: GlobalOptions = {};
  for (;;) {
    const arg = argv[i] ?? "";
    const eq = arg.indexOf("=");
    const key = GLOBAL_KEYS[eq < 0 ? arg : arg.slice(0, eq)];
    if (!key) break;
    if (eq >= 0) {
      globals[key] = arg.slice(eq + 1);
      i += 1;
    } else {
      if (argv[i + 1] === undefined) throw new UsageError(`option '${arg} <value>' argument missing`);
      globals[key] = argv[i + 1];
      i += 2;
    }
  }
  const name = argv[i];
  if (name !== "exec" && name !== "console") return undefined;
  const console = name === "console";
  const rest = argv.slice(i + 1);
  const split = splitAtCommand(rest, console);
  const options = spellBareExposeHttps(split.options);
  const command = split.command;
  if (options.some((arg) => arg === "-h" || arg === "--help")) return undefined;
  const specs = EXEC_OPTIONS.filter((spec) => !(console && spec.execOnly));
  let values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  try {
    values = parseArgs({
      args: options,
      strict: true,
      allowPositionals: false,
      options: Object.fromEntries(specs.map((spec) => [
        spec.long,
        { type: spec.value ? "string" : "boolean", ...(spec.short ? { short: spec.short } : {}), ...(spec.repeatable ? { multiple: true } : {}) },
      ])),
    }).values as typeof values;
  } catch (err) {
    throw new UsageError(`${(err as Error).message.split("\n")[0]} (see \`cleanroom ${name} --help\`)`);
  }
  const text = (key: string) => values[key] as string | undefined;
  const on = (key: string) => values[key] === true;
  const inId = text("in") ?? text("sandbox-id");
  const flags: ExecFlags = {
    ...(inId ? { in: inId } : {}),
    ...(text("chdir") ? { chdir: text("chdir")! } : {}),
    ...(text("image") ? { image: text("image")! } : {}),
    ...(text("repo-url") ? { repoUrl: text("repo-url")! } : {}),
    ...(text("repo-commit") ? { repoCommit: text("repo-commit")! } : {}),
    ...(text("backend") ? { backend: text("backend")! } : {}),
    ...(text("from") ? { from: text("from")! } : {}),
    ...(text("launch-seconds") ? { launchSeconds: text("launch-seconds")! } : {}),
    env: (values.env as string[] | undefined) ?? [],
    expose: (values.expose as string[] | undefined) ?? [],
    exposeHttps: (values["expose-https"] as string[] | undefined) ?? [],
    keep: on("keep"),
    rm: on("rm"),
    stdin: !on("no-stdin"),
    tty: on("tty"),
    printSandboxId: on("print-sandbox-id"),
    printTraceId: on("print-trace-id"),
    dangerouslyAllowAll: on("dangerously-allow-all"),
    copyIn: on("copy-in") || on("sync"),
    copyOut: on("copy-out") || on("sync"),
  };
  return { console, globals, flags, command };
}

/** Options end at `--` or at the first word that is not an option or an option's value. */
function splitAtCommand(args: readonly string[], console: boolean): { options: string[]; command: string[] } {
  const takesValue = new Set<string>();
  for (const spec of EXEC_OPTIONS) {
    if (!spec.value || (console && spec.execOnly)) continue;
    takesValue.add(`--${spec.long}`);
    if (spec.short) takesValue.add(`-${spec.short}`);
  }
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--") return { options: args.slice(0, i), command: args.slice(i + 1) };
    if (!arg.startsWith("-") || arg === "-") return { options: args.slice(0, i), command: args.slice(i) };
    if (takesValue.has(arg) && !bareExposeHttps(args, i)) i++;
  }
  return { options: [...args], command: [] };
}
