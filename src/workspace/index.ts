/**
 * workspace/: the developer's side of repository-aware sandboxes: reading the local Git checkout (HEAD, branch,
 * remote, dirtiness, files at a commit), turning its remote into the https URL the daemon checks out, and syncing
 * the working tree into and out of a sandbox that holds the same repository.
 */
export { checkoutState, fileAtCommit, filesAtCommit, findCheckoutRoot, git, pushedAncestor, remoteUrl, type CheckoutState } from "./local-checkout.ts";
export { httpsRemoteUrl } from "./remote-url.ts";
export { copyIn, copyOut, fetchSandboxWorkspace, MAX_BUNDLE_BYTES, type CopyInResult, type CopyOutResult } from "./sync.ts";
export type { SandboxAccess, SandboxRepository } from "./sandbox-side.ts";
export type { TreeChange } from "./tree-changes.ts";
export { printablePath } from "./copy-out-plan.ts";
export { pruneBindings } from "./local-snapshot.ts";
