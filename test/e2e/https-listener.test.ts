// The daemon on an https:// listener: the CLI (fast path and full program) and the SDK's HTTP/2 port dials reach it
// with the CA given by --tls-ca or CLEANROOM_TLS_CA, and nothing that does not trust that CA does; /healthz stays
// open. Listeners that would expose the API beyond loopback without TLS and auth are refused before anything starts.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { once } from "node:events";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { before, test } from "node:test";
import { suiteCleanup } from "../fixtures/cleanup.ts";
import { ensureBaseImage, removeNetworkLeftovers, runCli, startTestDaemon, uniqueNetwork, type TestDaemon } from "../fixtures/daemon.ts";
import { httpsListener, testCertificates, type TestCertificates } from "../fixtures/tls.ts";
import { freePort } from "../fixtures/ports.ts";

const suite = suiteCleanup();
let daemon: TestDaemon;
let certs: TestCertificates;

before(async () => {
  certs = testCertificates(["127.0.0.1", "localhost"]);
  suite.after(() => certs.remove());
  const port = await freePort();
  daemon = await startTestDaemon(suite, {
    listen: httpsListener(certs, port),
  });
  await ensureBaseImage(daemon);
});

test("the CLI and the SDK reach an https daemon that their CA vouches for, and only then", async () => {
  const exec = await daemon.cli(["exec", "--", "echo", "hello over tls"]);
  assert.equal(exec.stdout, "hello over tls\n", exec.stderr);

  const untrusting = { CLEANROOM_TLS_CA: "" };
  const refused = await daemon.cli(["sandbox", "ls"], { env: untrusting });
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /certificate/i, "without the CA the daemon's certificate is not accepted");
  const flagged = await daemon.cli(["--tls-ca", certs.caFile, "sandbox", "ls", "--json"], { env: untrusting });
  assert.equal(flagged.code, 0, flagged.stderr);
  const fast = await daemon.cli(["--tls-ca", certs.caFile, "exec", "--", "true"], { env: untrusting });
  assert.equal(fast.code, 0, fast.stderr);

  // a bidirectional port dial: HTTP/2 over TLS (ALPN h2) to the same listener
  const sandbox = await daemon.client.createSandbox({});
  suite.after(() => sandbox.terminate().catch(() => undefined));
  const copied = await daemon.cli(["cp", "/bin/busybox", `${sandbox.id}:/usr/local/bin/busybox`]);
  assert.equal(copied.code, 0, copied.stderr);
  const served = await sandbox.exec(["sh", "-c", "mkdir -p /srv && echo tls-dial-ok > /srv/index.html && busybox httpd -p 127.0.0.1:3000 -h /srv"]);
  assert.equal(served.exitCode, 0, served.stderr.toString());
  const connection = await sandbox.dialPort(3000);
  connection.end("GET /index.html HTTP/1.0\r\n\r\n");
  let answer = "";
  for await (const chunk of connection) answer += (chunk as Buffer).toString();
  assert.match(answer, /tls-dial-ok/);
});

test("serve refuses listeners that would put the API beyond loopback without TLS and auth", async () => {
  const env = { ...daemon.env, CLEANROOM_STATE_DIR: mkdtempSync(join(tmpdir(), "cleanroom-refused-")) };
  suite.after(() => rmSync(env.CLEANROOM_STATE_DIR, { recursive: true, force: true }));
  const plain = await runCli(["serve", "--listen", "http://0.0.0.0:7799"], env);
  assert.equal(plain.code, 1);
  assert.match(plain.stderr, /plain http is only served on loopback.*\[auth_insecure_transport\]/);
  const open = await runCli(["serve", "--listen", "https://0.0.0.0:7799", "--tls-cert", certs.certFile, "--tls-key", certs.keyFile], env);
  assert.equal(open.code, 1);
  assert.match(open.stderr, /beyond loopback needs auth\.required: true/);
  writeFileSync(join(certs.dir, "garbage.pem"), "not a certificate\n");
  const garbage = await runCli(["serve", "--listen", "https://127.0.0.1:7799", "--tls-cert", join(certs.dir, "garbage.pem"), "--tls-key", certs.keyFile], env);
  assert.equal(garbage.code, 1, "a certificate that does not load stops serve before anything starts, instead of leaving it half up");
  assert.match(garbage.stderr, /are not a PEM certificate and its private key.*\[invalid_argument\]/);
  const keyless = await runCli(["serve", "--listen", "https://127.0.0.1:7799"], env);
  assert.equal(keyless.code, 1);
  assert.match(keyless.stderr, /needs both --tls-cert and --tls-key/);
});

test("serve that fails after it started its gateway and network releases them and exits, instead of hanging", async () => {
  const busy = createServer().listen(0, "127.0.0.1");
  await once(busy, "listening");
  suite.after(() => busy.close());
  const port = (busy.address() as { port: number }).port;
  // a network of its own: it gets as far as setting one up, and must not touch the running daemon's
  const network = uniqueNetwork("r");
  const forwardingBefore = readFileSync("/proc/sys/net/ipv4/ip_forward", "utf8").trim();
  const state = mkdtempSync(join(tmpdir(), "cleanroom-busy-"));
  suite.after(() => {
    removeNetworkLeftovers(network, forwardingBefore);
    rmSync(state, { recursive: true, force: true });
  });
  const env = {
    ...daemon.env,
    CLEANROOM_STATE_DIR: join(state, "state"),
    CLEANROOM_RUN_DIR: join(state, "run"),
    CLEANROOM_NETWORK_TABLE: network.table,
    CLEANROOM_NETWORK_PREFIX: network.prefix,
    CLEANROOM_NETWORK_POOL: network.pool,
    CLEANROOM_WARM_POOL: "0",
  };
  const started = performance.now();
  const result = await runCli(["serve", "--listen", `http://127.0.0.1:${port}`], env, undefined, 60_000);
  assert.equal(result.code, 1, result.stderr);
  assert.match(result.stderr, /EADDRINUSE|address already in use/i);
  assert.ok(performance.now() - started < 30_000, "it exited on its own");
});
