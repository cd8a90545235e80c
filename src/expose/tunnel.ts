import type { Duplex } from "node:stream";

/** how long a side may take to flush what it was given once its peer has gone */
const FLUSH_GRACE_MS = 5_000;

/**
 * Pipes `local` and `remote` into each other until both are closed. Half-closes pass through (an end on one side
 * ends the other's writing), but once either side is closed for good the other is ended and then destroyed: a peer
 * that never closes its half cannot keep a dead connection (and its dial helper in the sandbox) alive. Rejects with
 * the remote's error if it failed (it says more: nothing listens, the sandbox is gone), else the local one's.
 */
export function tunnel(local: Duplex, remote: Duplex): Promise<void> {
  return new Promise((resolve, reject) => {
    let localError: Error | undefined;
    let remoteError: Error | undefined;
    let open = 2;
    const closed = (other: Duplex) => () => {
      finish(other);
      if (--open === 0) {
        const err = remoteError ?? localError;
        if (err) reject(err);
        else resolve();
      }
    };
    local.on("error", (err: Error) => (localError ??= err));
    remote.on("error", (err: Error) => (remoteError ??= err));
    local.once("close", closed(remote));
    remote.once("close", closed(local));
    local.pipe(remote);
    remote.pipe(local);
  });
}

function finish(side: Duplex): void {
  if (side.destroyed) return;
  if (side.writableFinished) return void side.destroy();
  side.once("finish", () => side.destroy());
  side.end();
  setTimeout(() => side.destroy(), FLUSH_GRACE_MS).unref();
}
