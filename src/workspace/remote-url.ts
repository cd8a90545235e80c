/**
 * A Git remote as the daemon can fetch it: an https URL without credentials. Developers' remotes are often SSH
 * (`git@host:org/repo.git`, `ssh://git@host/org/repo.git`); the gateway fetches over https with its own
 * credentials, so those become `https://host/org/repo.git`. Pure.
 */

/** The https form of `remote`, or a string saying why there is none. */
export function httpsRemoteUrl(remote: string): { url: string } | { problem: string } {
  const text = remote.trim();
  const scp = /^(?:[A-Za-z0-9._-]+@)?([A-Za-z0-9.-]+):(?!\/)(.+)$/.exec(text);
  if (scp && !text.includes("://")) return fromParts(scp[1]!, "", scp[2]!, text);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return { problem: `${text} is a local path, not a URL the gateway can fetch` };
  }
  if (url.protocol === "ssh:" || url.protocol === "git+ssh:") return fromParts(url.hostname, "", url.pathname, text);
  if (url.protocol === "https:") return fromParts(url.hostname, url.port, url.pathname, text);
  return { problem: `${redact(url)} uses ${url.protocol.replace(/:$/, "")}; only https and ssh remotes can be checked out through the gateway` };
}

function fromParts(host: string, port: string, path: string, original: string): { url: string } | { problem: string } {
  const cleanPath = path.replace(/^\/+/, "").replace(/\/+$/, "");
  if (!host || !cleanPath) return { problem: `${original} names no repository` };
  return { url: `https://${host.toLowerCase()}${port ? `:${port}` : ""}/${cleanPath}` };
}

/** A URL for messages: userinfo (tokens) removed. */
function redact(url: URL): string {
  const copy = new URL(url.href);
  copy.username = "";
  copy.password = "";
  return copy.href;
}
