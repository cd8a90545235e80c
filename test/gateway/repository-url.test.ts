import assert from "node:assert/strict";
import { test } from "node:test";
import { isCleanroomError } from "../../src/errors/index.ts";
import { parseRepositoryUrl } from "../../src/gateway/index.ts";

test("a repository URL becomes the mirror's canonical https upstream", () => {
  const upstream = parseRepositoryUrl("https://GIT.test:8443/org/app.git/");
  assert.equal(upstream.url.href, "https://git.test:8443/org/app.git");
  assert.deepEqual([upstream.host, upstream.port, upstream.authority], ["git.test", 8443, "git.test:8443"]);
  assert.equal(parseRepositoryUrl("https://git.test:443/org/app").authority, "git.test");
});

test("anything but a plain https repository URL is invalid_argument", () => {
  for (const url of [
    "http://git.test/org/app.git",
    "https://user:pw@git.test/org/app.git",
    "https://git.test/org/app.git?x=1",
    "https://git.test/",
    "https://git.test/org/../etc",
    "https://git.test/org/.hidden",
    "https://git.test/org/%2e%2e/x",
    "https://127.0.0.1.nip/org/x y",
    "ext::sh -c id",
  ]) {
    assert.throws(() => parseRepositoryUrl(url), (err) => isCleanroomError(err, "invalid_argument"), url);
  }
});
