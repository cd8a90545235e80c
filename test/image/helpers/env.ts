import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { promisify } from "node:util";
import type { IdRange } from "../../../src/config/index.ts";

const execFileP = promisify(execFile);

/** A test id range away from the daemon's default, so nothing collides with a live daemon. */
export const TEST_ID_RANGE: IdRange = { hostBase: 1_300_000_000, size: 65_536 };

/** A temp dir removed in t.after. */
export async function tempDir(t: Pick<TestContext, "after">, prefix = "cleanroom-image-"): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Runs a command with a timeout; rejects with its stderr. */
export async function run(cmd: string, args: string[], timeoutMs = 60_000): Promise<string> {
  try {
    const { stdout } = await execFileP(cmd, args, { timeout: timeoutMs, maxBuffer: 16 << 20 });
    return stdout;
  } catch (e) {
    const err = e as Error & { stderr?: string };
    throw new Error(`${cmd} ${args.join(" ")} failed: ${err.message}\n${err.stderr ?? ""}`);
  }
}

/** Pushes an OCI layout tag to a loopback registry with skopeo (`--all` copies every platform of an index). */
export async function skopeoPush(layoutDir: string, tag: string, dest: string, opts: { all?: boolean; creds?: string } = {}): Promise<void> {
  const args = ["copy", "--quiet", "--dest-tls-verify=false"];
  if (opts.all) args.push("--all");
  if (opts.creds) args.push("--dest-creds", opts.creds);
  args.push(`oci:${layoutDir}:${tag}`, `docker://${dest}`);
  await run("skopeo", args, 120_000);
}

/** The value of an xattr, or undefined when unset. */
export async function getXattr(path: string, name: string): Promise<string | undefined> {
  try {
    return (await run("getfattr", ["--only-values", "-n", name, "--", path])).trim();
  } catch {
    return undefined;
  }
}
