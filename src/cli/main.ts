// The CLI entry. `exec` and `console` (the commands whose start-up time users feel) are parsed here with
// node:util; everything else loads the full commander program. Both read the same option table.
import { matchFastExec, spellBareExposeHttps, UsageError, type FastExec } from "./exec-options.ts";
import { resolveClientFlags } from "./client.ts";
import { reportError } from "./output.ts";
import { EXEC_FAILURE_EXIT, runExec } from "./commands/exec.ts";

let fast: FastExec | undefined;
try {
  fast = matchFastExec(process.argv.slice(2));
} catch (err) {
  if (!(err instanceof UsageError)) throw err;
  process.stderr.write(`cleanroom: ${err.message}\n`);
  process.exit(2);
}

if (fast) {
  try {
    const client = await resolveClientFlags(fast.globals);
    process.exitCode = await runExec(fast.command, { ...fast.flags, ...client }, { console: fast.console });
  } catch (err) {
    reportError(err, false);
    process.exitCode = EXEC_FAILURE_EXIT;
  }
} else {
  const { buildProgram } = await import("./program.ts");
  await buildProgram().parseAsync(spellBareExposeHttps(process.argv.slice(2)), { from: "user" });
}
