/**
 * workspace/: the developer's side of repository-aware sandboxes: reading the local Git checkout (HEAD, branch,
 * remote, dirtiness, files at a commit) and turning its remote into the https URL the daemon checks out.
 */
export { checkoutState, fileAtCommit, filesAtCommit, findCheckoutRoot, remoteUrl, type CheckoutState } from "./local-checkout.ts";
export { httpsRemoteUrl } from "./remote-url.ts";
