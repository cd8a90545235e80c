// Trusting the exposure CA system-wide, so curl and most tools accept https://*.cleanroom.localhost without a
// --cacert. Names under .localhost already resolve to loopback in browsers and curl, so nothing about DNS changes.
import { access, copyFile, rm } from "node:fs/promises";
import { runCommand } from "../host-command/index.ts";
import { CleanroomError } from "../errors/index.ts";

const ANCHOR_NAME = "cleanroom-exposure-ca.crt";

/** Where each family of distributions keeps local trust anchors, and the tool that rebuilds its bundle. */
const TRUST_STORES = [
  { dir: "/usr/local/share/ca-certificates", update: ["update-ca-certificates"] }, // Debian, Ubuntu, Alpine
  { dir: "/etc/pki/ca-trust/source/anchors", update: ["update-ca-trust", "extract"] }, // Fedora, RHEL
] as const;

const UPDATE_TIMEOUT_MS = 120_000;

async function exists(path: string): Promise<boolean> {
  return access(path).then(() => true, () => false);
}

async function trustStore(): Promise<(typeof TRUST_STORES)[number]> {
  for (const store of TRUST_STORES) if (await exists(store.dir)) return store;
  throw new CleanroomError("failed_precondition", `no system trust store found (looked for ${TRUST_STORES.map((s) => s.dir).join(", ")}); trust the CA by hand: \`cleanroom ca print\``);
}

function requireRoot(what: string): void {
  if (process.getuid?.() !== 0) throw new CleanroomError("failed_precondition", `${what} changes the system trust store: run it as root (sudo)`);
}

/** Adds the CA certificate at `certPath` to the system trust store; returns the anchor's path. */
export async function installSystemTrust(certPath: string): Promise<string> {
  requireRoot("cleanroom ca install");
  const store = await trustStore();
  const anchor = `${store.dir}/${ANCHOR_NAME}`;
  await copyFile(certPath, anchor);
  await runCommand(store.update[0], store.update.slice(1), { timeoutMs: UPDATE_TIMEOUT_MS });
  return anchor;
}

/** Removes the CA from the system trust store (if it is there); returns the anchor removed, if any. */
export async function uninstallSystemTrust(): Promise<string | undefined> {
  for (const store of TRUST_STORES) {
    const anchor = `${store.dir}/${ANCHOR_NAME}`;
    if (!(await exists(anchor))) continue;
    requireRoot("cleanroom ca uninstall");
    await rm(anchor, { force: true });
    await runCommand(store.update[0], store.update.slice(1), { timeoutMs: UPDATE_TIMEOUT_MS });
    return anchor;
  }
  return undefined;
}
