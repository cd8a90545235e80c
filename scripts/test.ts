// Runs the whole suite: unit tests first (fast, no root), then end-to-end tests (root, runc, nft, registry).
// Files run one at a time: the e2e suites share the machine's cgroups, runc and loopback registry.
import { spawnSync } from "node:child_process";
import { globSync } from "node:fs";
import { join } from "node:path";

const root = join(import.meta.dirname, "..");
// the e2e suites run bin/cleanroom, which prefers the bundle: never test a stale one
const built = spawnSync(process.execPath, [join(root, "scripts", "build.ts")], { cwd: root, stdio: "inherit" });
if (built.status !== 0) process.exit(built.status ?? 1);
// the agent's own tests (the file helper's path and symlink rules among them), with the build's Go settings
const agentTests = spawnSync("sh", [join(root, "agent", "build.sh"), "--test"], { cwd: root, stdio: "inherit" });
if (agentTests.status !== 0) process.exit(agentTests.status ?? 1);
const only = process.argv.slice(2);
const files = only.length ? only : globSync("test/**/*.test.ts", { cwd: root }).sort((a, b) => {
  const e2e = (f: string) => (f.startsWith("test/e2e/") ? 1 : 0);
  return e2e(a) - e2e(b) || a.localeCompare(b);
});
const result = spawnSync(process.execPath, ["--test", "--test-concurrency=1", "--test-timeout=300000", ...files], {
  cwd: root,
  stdio: "inherit",
});
process.exit(result.status ?? 1);
