// Builds what a checkout needs to run: the static agent (Go) and the bundled CLI entry.
// The bundle is what keeps `cleanroom exec` start-up small (see DESIGN: speed budget of the CLI).
import { execFileSync } from "node:child_process";
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { build } from "esbuild";

const root = join(import.meta.dirname, "..");
const dist = join(root, "dist");
mkdirSync(dist, { recursive: true });

execFileSync("bash", [join(root, "agent", "build.sh"), dist], { stdio: "inherit" });

rmSync(join(dist, "cli"), { recursive: true, force: true });
rmSync(join(dist, ".compile-cache"), { recursive: true, force: true });
await build({
  entryPoints: [join(root, "src", "cli", "main.ts")],
  outdir: join(dist, "cli"),
  bundle: true,
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node24",
  // pino's worker-thread transports are resolved at run time from node_modules; keep pino external
  external: ["pino"],
  banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  logLevel: "warning",
});
// the daemon resolves the package root (package.json, dist/cleanroom-agent) from its own location
console.log(`built ${dist}/cleanroom-agent and ${dist}/cli/main.js`);
