// HTTPS exposure end to end: a Node dev server in a real sandbox (HTTP, server-sent events, a WebSocket echo) reached
// at https://<host>.cleanroom.localhost:<port> through the CLI's HTTPS front, with curl trusting the Cleanroom CA:
// the policy's multi-host routes (`create --expose-https`, bare), a named route (`exec --expose-https`), `expose --in`
// with the CA trusted system-wide, and every exposure ending with the sandbox.
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { before, test } from "node:test";
import { promisify } from "node:util";
import { Agent, WebSocket } from "undici";
import { suiteCleanup } from "../fixtures/cleanup.ts";
import { cliPath, repoRoot, startTestDaemon, type TestDaemon } from "../fixtures/daemon.ts";
import { ensureNodeImage } from "../fixtures/node-image.ts";
import { startRunningCli } from "../fixtures/running-cli.ts";

const run = promisify(execFile);
const suite = suiteCleanup();
let daemon: TestDaemon;
let env: NodeJS.ProcessEnv;
let caDir: string;
let policyDir: string;

before(async () => {
  daemon = await startTestDaemon(suite);
  const nodeRef = await ensureNodeImage(daemon);
  const images = JSON.parse((await daemon.cli(["image", "ls", "--json"])).stdout) as { ref: string; digest: string }[];
  const digest = images.find((image) => image.ref === nodeRef)!.digest;
  caDir = mkdtempSync(join(tmpdir(), "cleanroom-exposure-ca-"));
  suite.after(() => rmSync(caDir, { recursive: true, force: true }));
  env = { ...daemon.env, CLEANROOM_EXPOSURE_DIR: caDir };
  policyDir = mkdtempSync(join(tmpdir(), "cleanroom-expose-policy-"));
  suite.after(() => rmSync(policyDir, { recursive: true, force: true }));
  writeFileSync(join(policyDir, "cleanroom.yaml"), [
    "version: 1",
    "sandbox:",
    "  image:",
    `    ref: cleanroom.local/node-npm@${digest}`,
    "expose:",
    "  https:",
    "    routes:",
    "      - port: 3000",
    "        hosts: [\"{base}\", \"*.{base}\"]",
    "      - port: 4000",
    "        hosts: [\"admin.{base}\"]",
    "",
  ].join("\n"));
});

/** Starts a CLI command that keeps running (with the test's CA directory); resolves once its stderr matches `ready`. */
const startCli = (args: string[], ready: RegExp, cwd?: string) => startRunningCli(suite, args, ready, { env, ...(cwd ? { cwd } : {}) });

const portOf = (lines: string, host: string) => Number(new RegExp(`https://${host.replaceAll(".", "\\.").replaceAll("*", "\\*")}:(\\d+)/`).exec(lines)?.[1]);

async function curl(url: string, ...args: string[]): Promise<string> {
  return (await run("curl", ["-sS", "--fail-with-body", "--max-time", "30", ...args, url])).stdout;
}

/** Waits until `url` answers (the dev server in the sandbox starts in the background). */
async function answered(url: string, ...args: string[]): Promise<string> {
  let last: unknown;
  for (let i = 0; i < 100; i++) {
    try {
      return await curl(url, ...args);
    } catch (err) {
      last = err;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
  throw last;
}

test("policy routes, a named route, WebSockets and streaming through HTTPS exposure; it ends with the sandbox", async () => {
  // `create --expose-https` (bare): the sandbox's policy routes, served until interrupted or the sandbox is gone
  const created = await startCli(["create", "--expose-https"], /exposing https:\/\/admin\./, policyDir);
  const id = created.stdout().trim();
  assert.match(id, /^[a-z0-9]{12}$/);
  suite.after(() => daemon.cli(["sandbox", "rm", id]));
  const lines = created.stderr();
  const port = portOf(lines, `${id}.cleanroom.localhost`);
  assert.ok(port > 0, lines);
  assert.equal(portOf(lines, `*.${id}.cleanroom.localhost`), port);
  assert.equal(portOf(lines, `admin.${id}.cleanroom.localhost`), port, "one HTTPS front serves every route");

  await run(cliPath, ["exec", "--in", id, "--", "mkdir", "-p", "/srv"], { env });
  await run(cliPath, ["cp", join(repoRoot, "test", "fixtures", "exposure-app", "server.cjs"), `${id}:/srv/server.cjs`], { env });
  const started = await run(cliPath, ["exec", "--in", id, "--", "sh", "-c", "setsid -f node /srv/server.cjs 3000 app >/tmp/app.log 2>&1; setsid -f node /srv/server.cjs 4000 admin >/tmp/admin.log 2>&1"], { env });
  assert.equal(started.stderr, "");

  const cacert = ["--cacert", join(caDir, "ca", "cert.pem")];
  const base = `${id}.cleanroom.localhost:${port}`;
  const app = JSON.parse(await answered(`https://${base}/hello`, ...cacert));
  assert.deepEqual(app, { name: "app", url: "/hello", host: base, forwardedHost: base, forwardedProto: "https", forwardedPort: String(port) });
  assert.equal(JSON.parse(await curl(`https://www.${base}/`, ...cacert)).host, `www.${base}`, "*.{base}: a certificate for www.<base> was issued on the spot");
  assert.equal(JSON.parse(await answered(`https://admin.${base}/`, ...cacert)).name, "admin", "admin.{base} goes to port 4000: a multi-host route");
  await assert.rejects(curl(`https://nothing.other.cleanroom.localhost:${port}/`, ...cacert), "a name no route serves gets no certificate for it");

  // streaming: server-sent events arrive as they are sent, 500 ms apart
  const events: { at: number; text: string }[] = [];
  const t0 = Date.now();
  const stream = spawn("curl", ["-sSN", "--max-time", "30", ...cacert, `https://${base}/stream`]);
  stream.stdout.on("data", (chunk: Buffer) => events.push({ at: Date.now() - t0, text: chunk.toString() }));
  await new Promise((resolve) => stream.once("exit", resolve));
  assert.equal(events.map((e) => e.text).join(""), "data: one\n\ndata: two\n\n");
  assert.ok(events.length >= 2 && events.at(-1)!.at - events[0]!.at >= 300, `the first event came before the second was sent: ${JSON.stringify(events)}`);

  // a WebSocket through the same front, with undici trusting the Cleanroom CA
  const dispatcher = new Agent({
    connect: {
      ca: readFileSync(join(caDir, "ca", "cert.pem")),
      // names under .localhost are loopback (RFC 6761); this resolver does not know it, browsers and curl do
      lookup: (_host: string, _opts: unknown, callback: (err: Error | null, addresses: { address: string; family: number }[]) => void) => callback(null, [{ address: "127.0.0.1", family: 4 }]),
    },
  });
  const socket = new WebSocket(`wss://ws.${base}/chat`, { dispatcher });
  const replies: string[] = [];
  await new Promise<void>((resolve, reject) => {
    socket.addEventListener("open", () => socket.send("hello through cleanroom"));
    socket.addEventListener("message", (event) => {
      replies.push(String(event.data));
      if (replies.length === 1) socket.send("x".repeat(1000));
      else socket.close();
    });
    socket.addEventListener("close", () => resolve());
    socket.addEventListener("error", (event) => reject(new Error(`websocket: ${String((event as { message?: string }).message)}`)));
  });
  await dispatcher.close();
  assert.deepEqual(replies, ["echo: hello through cleanroom", `echo: ${"x".repeat(1000)}`]);

  // a named route while a command runs; the first front holds its port, so this one says where it went instead
  const exec = await startCli(["exec", "--in", id, "--expose-https", "web:3000", "--", "sleep", "6"], /exposing https:\/\/web\./);
  const webPort = portOf(exec.stderr(), "web.cleanroom.localhost");
  assert.ok(webPort > 0 && webPort !== port, exec.stderr());
  assert.equal(JSON.parse(await curl(`https://web.cleanroom.localhost:${webPort}/`, ...cacert)).host, `web.cleanroom.localhost:${webPort}`);
  assert.equal(await exec.exited, 0);
  await assert.rejects(curl(`https://web.cleanroom.localhost:${webPort}/`, ...cacert), "exec --expose-https serves only while the command runs");

  // expose --in, with the CA trusted system-wide: curl needs no --cacert
  const exposed = await startCli(["expose", "--in", id, "--expose-https", "*.dev:3000"], /exposing https:\/\/\*\.dev\./);
  const devPort = portOf(exposed.stderr(), "*.dev.cleanroom.localhost");
  suite.after(async () => {
    await run(cliPath, ["ca", "uninstall"], { env });
  });
  const installed = await run(cliPath, ["ca", "install"], { env });
  assert.match(installed.stdout, /trusted .*cert\.pem system-wide/);
  assert.equal(JSON.parse(await curl(`https://api.dev.cleanroom.localhost:${devPort}/`)).host, `api.dev.cleanroom.localhost:${devPort}`);
  const removed = await run(cliPath, ["ca", "uninstall"], { env });
  assert.match(removed.stdout, /removed .*cleanroom-exposure-ca\.crt/);
  await assert.rejects(curl(`https://api.dev.cleanroom.localhost:${devPort}/`), "untrusted again once uninstalled");

  // the sandbox goes: both fronts stop and say why
  assert.equal((await daemon.cli(["sandbox", "rm", id])).code, 0);
  assert.equal(await created.exited, 1);
  assert.equal(await exposed.exited, 1);
  assert.match(created.stderr(), /stopped exposing: sandbox \S+ is STOPP(ING|ED)/);
  await assert.rejects(curl(`https://${base}/`, ...cacert), "nothing listens once the sandbox is gone");
});
