import { test, before } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { suiteCleanup } from "../fixtures/cleanup.ts";
import { startTestDaemon, type TestDaemon } from "../fixtures/daemon.ts";
import { startRegistry, type TestRegistry } from "../fixtures/registry.ts";
import { tarOf, writeOciLayout, type TarSpec } from "../image/helpers/oci-layout.ts";
import { run, skopeoPush } from "../image/helpers/env.ts";

const suite = suiteCleanup();
let daemon: TestDaemon;
let registry: TestRegistry;
let digest: string;
let layout: string;

/** A tiny image: busybox-static and its applet links. */
function busyboxLayer(): Buffer {
  const entries: TarSpec[] = ["bin", "etc", "root", "tmp", "proc", "dev", "sys"].map((d) => ({ path: `${d}/`, type: "Directory" as const }));
  entries.push({ path: "bin/busybox", data: readFileSync("/bin/busybox"), mode: 0o755 });
  for (const applet of ["sh", "echo", "cat", "ls", "id"]) entries.push({ path: `bin/${applet}`, type: "SymbolicLink", linkpath: "busybox" });
  entries.push({ path: "etc/passwd", data: "root:x:0:0:root:/root:/bin/sh\n" });
  return tarOf(entries);
}

before(async () => {
  daemon = await startTestDaemon(suite, { privateImages: true });
  registry = await startRegistry(suite);
  layout = await mkdtemp(join(tmpdir(), "cleanroom-layout-"));
  suite.after(() => rm(layout, { recursive: true, force: true }));
  const built = await writeOciLayout(layout, "1", { layers: [busyboxLayer()], env: ["PATH=/bin"] });
  digest = built.manifestDigest;
  await skopeoPush(layout, "1", `${registry.host}/tools/busybox:1`);
});

test("an image pulled from a registry by tag runs in a sandbox", async () => {
  const pulled = await daemon.cli(["image", "pull", `${registry.host}/tools/busybox:1`]);
  assert.equal(pulled.code, 0, pulled.stderr);
  assert.equal(pulled.stdout.trim(), `${registry.host}/tools/busybox:1@${digest}`);
  const result = await daemon.cli(["exec", "--image", `${registry.host}/tools/busybox:1`, "--", "echo", "from the registry"]);
  assert.equal(result.stdout, "from the registry\n");
  assert.equal(result.code, 0, result.stderr);
});

test("executions get the image's environment, and -e overrides it", async () => {
  const image = await daemon.cli(["exec", "--image", `${registry.host}/tools/busybox:1`, "--", "sh", "-c", "echo $PATH"]);
  assert.equal(image.stdout, "/bin\n", image.stderr);
  const overridden = await daemon.cli(["exec", "--image", `${registry.host}/tools/busybox:1`, "-e", "PATH=/bin:/custom", "--", "sh", "-c", "echo $PATH"]);
  assert.equal(overridden.stdout, "/bin:/custom\n", overridden.stderr);
});

test("a digest-pinned image is pulled on first use by exec and listed afterwards", async () => {
  const ref = `${registry.host}/tools/busybox@${digest}`;
  await daemon.cli(["image", "rm", `${registry.host}/tools/busybox:1`]);
  const result = await daemon.cli(["exec", "--image", ref, "--", "cat", "/etc/passwd"]);
  assert.equal(result.stdout, "root:x:0:0:root:/root:/bin/sh\n", result.stderr);
  const listed = JSON.parse((await daemon.cli(["image", "ls", "--json"])).stdout) as { ref: string; digest: string }[];
  assert.ok(listed.some((image) => image.digest === digest), JSON.stringify(listed));
});

test("a missing image fails with a reason code and no sandbox is left", async () => {
  const result = await daemon.cli(["exec", "--image", `${registry.host}/tools/absent:1`, "--", "true"]);
  assert.equal(result.code, 125);
  assert.match(result.stderr, /\[(image_not_found|registry_error)\]/);
  const live = JSON.parse((await daemon.cli(["sandbox", "ls", "--json"])).stdout) as unknown[];
  assert.deepEqual(live, []);
});

test("an image imported from an OCI archive runs without any registry", async () => {
  const archive = join(layout, "busybox.tar");
  await run("skopeo", ["copy", "--quiet", `oci:${layout}:1`, `oci-archive:${archive}:imported/busybox:2`]);
  const imported = await daemon.cli(["image", "import", "imported/busybox:2", archive]);
  assert.equal(imported.code, 0, imported.stderr);
  assert.match(imported.stdout, /busybox:2@sha256:[0-9a-f]{64}/);
  const result = await daemon.cli(["exec", "--image", "imported/busybox:2", "--", "echo", "imported"]);
  assert.equal(result.stdout, "imported\n", result.stderr);
  const removed = await daemon.cli(["image", "rm", "imported/busybox:2"]);
  assert.equal(removed.code, 0, removed.stderr);
  const listed = JSON.parse((await daemon.cli(["image", "ls", "--json"])).stdout) as { ref: string }[];
  assert.ok(!listed.some((image) => image.ref.includes("imported/busybox")), JSON.stringify(listed));
});
