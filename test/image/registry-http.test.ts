import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test, type TestContext } from "node:test";
import { isCleanroomError } from "../../src/errors/index.ts";
import { ImageStore } from "../../src/image/index.ts";
import { RegistryClient } from "../../src/image/registry-client.ts";
import { loadLayoutBlobs, startFakeRegistry, type FakeRegistry } from "./helpers/fake-registry.ts";
import { TEST_ID_RANGE, tempDir } from "./helpers/env.ts";
import { sha256, tarOf, writeOciLayout, type BuiltImage, type ImageSpec } from "./helpers/oci-layout.ts";

// random content, so the gzip layer stays big enough to be cut mid-body
const layer = tarOf([{ path: "data.bin", data: randomBytes(300_000) }, { path: "hello", data: "hi" }]);

async function fixture(t: TestContext, spec: ImageSpec = { layers: [layer] }): Promise<{ reg: FakeRegistry; img: BuiltImage; store: ImageStore; root: string }> {
  const layout = await tempDir(t);
  const img = await writeOciLayout(layout, "v1", spec);
  const reg = await startFakeRegistry(t, await loadLayoutBlobs(layout));
  reg.tags.set("v1", img.manifestDigest);
  const root = await tempDir(t);
  return { reg, img, store: new ImageStore({ root, idRange: TEST_ID_RANGE }), root };
}

async function assertNothingStored(root: string, store: ImageStore): Promise<void> {
  assert.deepEqual(await readdir(join(root, "blobs", "sha256")), [], "no blobs stored");
  assert.deepEqual(await readdir(join(root, "layers")), [], "no layers stored");
  assert.deepEqual((await readdir(join(root, "tmp"))).filter((n) => !n.endsWith(".partial")), [], "no temp files left");
  assert.deepEqual(await store.list(), []);
}

test("a tampered layer blob is image_invalid and nothing is stored", async (t) => {
  const { reg, img, store, root } = await fixture(t);
  const real = reg.blobs.get(img.layers[0]!.digest)!;
  const evil = Buffer.from(real);
  evil[evil.length - 20]! ^= 0xff;
  reg.tamper.set(img.layers[0]!.digest, evil);
  await assert.rejects(store.pull(`${reg.host}/x/y:v1`), (e) => isCleanroomError(e, "image_invalid") && /does not match/.test(e.message));
  await assertNothingStored(root, store);
  assert.deepEqual(await readdir(join(root, "tmp")), [], "the bad partial is gone too");
});

test("a tampered config and a manifest not matching the pulled digest are image_invalid", async (t) => {
  const { reg, img, store, root } = await fixture(t);
  reg.tamper.set(img.configDigest, Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [] } })));
  await assert.rejects(store.pull(`${reg.host}/x/y:v1`), (e) => isCleanroomError(e, "image_invalid"));
  reg.tamper.clear();
  reg.tamper.set(img.manifestDigest, Buffer.from(img.manifest.toString().replace("schemaVersion\":2", "schemaVersion\":2 ")));
  await assert.rejects(store.pull(`${reg.host}/x/y@${img.manifestDigest}`), (e) => isCleanroomError(e, "image_invalid") && /does not match/.test(e.message));
  await assertNothingStored(root, store);
});

test("a config whose diff_ids lie about the layer is image_invalid at unpack, nothing stored", async (t) => {
  const { reg, store, root } = await fixture(t, { layers: [layer], diffIds: [sha256("something else")] });
  await assert.rejects(store.pull(`${reg.host}/x/y:v1`), (e) => isCleanroomError(e, "image_invalid") && /diff|uncompresses/.test(e.message));
  await assertNothingStored(root, store);
});

test("an oversized manifest is refused", async (t) => {
  const { reg, store } = await fixture(t);
  const huge = Buffer.from(JSON.stringify({ schemaVersion: 2, pad: "x".repeat(5 << 20) }));
  reg.blobs.set(sha256(huge), huge);
  reg.tags.set("huge", sha256(huge));
  await assert.rejects(store.pull(`${reg.host}/x/y:huge`), (e) => isCleanroomError(e, "image_invalid") && /bytes/.test(e.message));
});

test("a download cut off mid-body resumes with a Range request", async (t) => {
  const { reg, img, store } = await fixture(t);
  const digest = img.layers[0]!.digest;
  reg.cutOnce.set(digest, 1000);
  const image = await store.pull(`${reg.host}/x/y:v1`);
  assert.equal(image.digest, img.manifestDigest);
  const ranges = reg.requests.filter((r) => r.path.endsWith(digest)).map((r) => r.range);
  assert.equal(ranges[0], undefined);
  assert.match(ranges[1] ?? "", /^bytes=\d+-$/);
  assert.ok(Number(/\d+/.exec(ranges[1]!)![0]) >= 1000);
});

test("a partial download left by a crashed process is adopted and resumed", async (t) => {
  const { reg, img, root } = await fixture(t);
  const digest = img.layers[0]!.digest;
  const blob = reg.blobs.get(digest)!;
  const dead = spawnSync("true").pid; // a pid that just exited
  await mkdir(join(root, "tmp"), { recursive: true });
  await writeFile(join(root, "tmp", `${digest.slice(7)}.${dead}.partial`), blob.subarray(0, 5000));
  const store = new ImageStore({ root, idRange: TEST_ID_RANGE });
  await store.pull(`${reg.host}/x/y:v1`);
  const ranges = reg.requests.filter((r) => r.path.endsWith(digest)).map((r) => r.range);
  assert.deepEqual(ranges, ["bytes=5000-"]);
  assert.deepEqual(await readdir(join(root, "tmp")), []);
});

test("bearer token auth: credentials are exchanged for a token; without them the pull fails with registry_error", async (t) => {
  const { reg, img, root } = await fixture(t);
  reg.bearer = { token: "tok-123", username: "alice", password: "s3cret" };
  const anonymous = new ImageStore({ root, idRange: TEST_ID_RANGE });
  await assert.rejects(anonymous.pull(`${reg.host}/x/y:v1`), (e) => isCleanroomError(e, "registry_error") && /credentials/.test(e.message));
  const seen: string[] = [];
  const store = new ImageStore({
    root,
    idRange: TEST_ID_RANGE,
    registry: { credentials: async (host) => (seen.push(host), { username: "alice", password: "s3cret" }) },
  });
  const image = await store.pull(`${reg.host}/x/y:v1`);
  assert.equal(image.digest, img.manifestDigest);
  assert.ok(seen.includes(reg.host));
  assert.ok(reg.requests.some((r) => r.path === "/token" && r.authorization?.startsWith("Basic ")));
  const tokenRequests = reg.requests.filter((r) => r.path === "/token").length;
  assert.ok(tokenRequests <= 3, `token cached across requests (${tokenRequests} token requests)`);
});

test("plain http only for loopback and configured insecure hosts", () => {
  const client = new RegistryClient({ insecureHosts: ["registry.lan:5000"] });
  assert.equal(client.baseUrl("127.0.0.1:5000"), "http://127.0.0.1:5000");
  assert.equal(client.baseUrl("localhost:5000"), "http://localhost:5000");
  assert.equal(client.baseUrl("[::1]:5000"), "http://[::1]:5000");
  assert.equal(client.baseUrl("registry.lan:5000"), "http://registry.lan:5000");
  assert.equal(client.baseUrl("registry.lan:5001"), "https://registry.lan:5001");
  assert.equal(client.baseUrl("docker.io"), "https://registry-1.docker.io");
  assert.throws(() => client.checkUrl(new URL("http://auth.example.com/token")), (e) => isCleanroomError(e, "registry_error"));
  assert.throws(() => client.checkUrl(new URL("ftp://127.0.0.1/x")), (e) => isCleanroomError(e, "registry_error"));
});

test("concurrent pulls of the same image in one store share downloads and both succeed", async (t) => {
  const { reg, img, store } = await fixture(t);
  const [a, b] = await Promise.all([store.pull(`${reg.host}/x/y:v1`), store.pull(`${reg.host}/x/y:v1`)]);
  assert.equal(a.digest, img.manifestDigest);
  assert.equal(b.digest, img.manifestDigest);
  assert.equal(reg.requests.filter((r) => r.path.endsWith(img.layers[0]!.digest)).length, 1, "the layer was fetched once");
});

test("blob redirects to another origin are followed without our Authorization header", async (t) => {
  const { reg, img, root } = await fixture(t);
  const cdn = await startFakeRegistry(t, reg.blobs);
  reg.bearer = { token: "tok-xyz", username: "u", password: "p" };
  reg.redirectBlobsTo = `http://${cdn.host}`;
  const store = new ImageStore({ root, idRange: TEST_ID_RANGE, registry: { credentials: async () => ({ username: "u", password: "p" }) } });
  const image = await store.pull(`${reg.host}/x/y:v1`);
  assert.equal(image.digest, img.manifestDigest);
  const cdnBlobRequests = cdn.requests.filter((r) => r.path.includes("/blobs/"));
  assert.ok(cdnBlobRequests.length >= 2, "config and layer came from the CDN");
  assert.ok(cdnBlobRequests.every((r) => r.authorization === undefined), "the registry token never reached the CDN");
});
