import assert from "node:assert/strict";
import { test } from "node:test";
import { httpsRemoteUrl } from "../../src/workspace/index.ts";

test("https remotes are kept, without credentials or a trailing slash", () => {
  assert.deepEqual(httpsRemoteUrl("https://Git.Example.com/org/repo.git"), { url: "https://git.example.com/org/repo.git" });
  assert.deepEqual(httpsRemoteUrl("https://x-access-token:secret@example.com/org/repo/"), { url: "https://example.com/org/repo" });
  assert.deepEqual(httpsRemoteUrl("https://git.test:8443/org/repo.git"), { url: "https://git.test:8443/org/repo.git" });
});

test("ssh remotes become the https URL of the same repository", () => {
  assert.deepEqual(httpsRemoteUrl("git@example.com:org/repo.git"), { url: "https://example.com/org/repo.git" });
  assert.deepEqual(httpsRemoteUrl("ssh://git@example.com:2222/org/repo.git"), { url: "https://example.com/org/repo.git" });
});

test("local paths and other protocols cannot be checked out, and say so without leaking tokens", () => {
  for (const remote of ["/srv/git/repo.git", "../repo", "file:///srv/repo.git", "http://user:token@example.com/org/repo.git", "git://example.com/org/repo"]) {
    const result = httpsRemoteUrl(remote);
    assert.ok("problem" in result, remote);
    assert.ok(!result.problem.includes("token"), result.problem);
  }
});
