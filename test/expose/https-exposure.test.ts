// The HTTPS front against real HTTP servers on loopback (the dialer connects to them instead of a sandbox: the
// end-to-end suite covers the sandbox dial) and a real CA on disk, checked with curl and openssl.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import { request as httpsRequest } from "node:https";
import { connect, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import { startExposure, type Exposure } from "../../src/expose/index.ts";
import { ExposureCa } from "../../src/expose/local-ca.ts";

const run = promisify(execFile);
const caDir = mkdtempSync(join(tmpdir(), "cleanroom-exposure-test-"));
let guest: Server;
let guestPort = 0;
let closedPort = 0;
let exposure: Exposure;
let httpsPort = 0;
const seen: { url: string; headers: IncomingHttpHeaders }[] = [];

before(async () => {
  guest = createServer((req, res) => {
    seen.push({ url: req.url ?? "", headers: req.headers });
    if (req.url === "/stream") {
      res.writeHead(200, { "Content-Type": "text/event-stream" });
      res.write("data: first\n\n");
      // the second event waits for the client's go-ahead: the first must have arrived on its own
      const next = setInterval(() => {
        if (seen.some((s) => s.url === "/go-ahead")) {
          clearInterval(next);
          res.end("data: second\n\n");
        }
      }, 20);
      return;
    }
    res.writeHead(200, { "Content-Type": "application/json", "Set-Cookie": ["a=1", "b=2"] });
    res.end(JSON.stringify({ url: req.url, host: req.headers.host }));
  });
  guest.on("upgrade", (req, socket) => {
    // a raw protocol switch: after the 101, whatever comes back is echoed upper-cased
    seen.push({ url: req.url ?? "", headers: req.headers });
    socket.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: shout\r\nConnection: Upgrade\r\n\r\n");
    socket.on("data", (chunk: Buffer) => socket.write(chunk.toString().toUpperCase()));
    socket.on("end", () => socket.end());
  });
  guest.listen(0, "127.0.0.1");
  await once(guest, "listening");
  guestPort = (guest.address() as AddressInfo).port;
  const probe = createServer().listen(0, "127.0.0.1");
  await once(probe, "listening");
  closedPort = (probe.address() as AddressInfo).port;
  await new Promise((resolve) => probe.close(resolve));

  const dial = async (port: number) => {
    const socket = connect(port, "127.0.0.1");
    await once(socket, "connect");
    return socket;
  };
  exposure = await startExposure(dial, {
    tcp: [],
    https: [
      { host: "web.cleanroom.localhost", port: guestPort },
      { host: "*.web.cleanroom.localhost", port: guestPort },
      { host: "down.cleanroom.localhost", port: closedPort },
    ],
  }, { label: "test", warn: () => undefined, httpsPort: 0, caDir });
  httpsPort = Number(/:(\d+)\//.exec(exposure.describe()[0]!)![1]);
});

after(async () => {
  rmSync(caDir, { recursive: true, force: true });
  await exposure?.close();
  const closed = new Promise((resolve) => guest?.close(resolve));
  guest?.closeAllConnections();
  await closed;
});

const caFile = () => join(caDir, "ca", "cert.pem");
const curl = async (url: string, ...args: string[]) => (await run("curl", ["-sS", "--max-time", "20", "--cacert", caFile(), ...args, url])).stdout;

test("curl trusting the Cleanroom CA reaches the guest; Host and the forwarding headers say what the client used", async () => {
  const body = JSON.parse(await curl(`https://web.cleanroom.localhost:${httpsPort}/hello?x=1`, "-H", "X-Forwarded-For: 6.6.6.6", "-H", "X-Forwarded-Host: evil.test"));
  assert.deepEqual(body, { url: "/hello?x=1", host: `web.cleanroom.localhost:${httpsPort}` });
  const headers = seen.find((s) => s.url === "/hello?x=1")!.headers;
  assert.equal(headers["x-forwarded-host"], `web.cleanroom.localhost:${httpsPort}`);
  assert.equal(headers["x-forwarded-proto"], "https");
  assert.equal(headers["x-forwarded-port"], String(httpsPort));
  assert.equal(headers["x-forwarded-for"], "127.0.0.1", "the client's own forwarding headers are replaced, not trusted");
  const withHeaders = await curl(`https://web.cleanroom.localhost:${httpsPort}/cookies`, "-D", "-", "-o", "/dev/null");
  assert.match(withHeaders, /set-cookie: a=1\r\n[^]*set-cookie: b=2/i, "both cookies pass");
});

test("a wildcard route serves any one label below it, with a certificate issued for that exact name", async () => {
  const body = JSON.parse(await curl(`https://api.web.cleanroom.localhost:${httpsPort}/v1`));
  assert.equal(body.host, `api.web.cleanroom.localhost:${httpsPort}`);
  const { stdout } = await run("sh", ["-c", `openssl s_client -connect 127.0.0.1:${httpsPort} -servername agent.web.cleanroom.localhost </dev/null 2>/dev/null | openssl x509 -noout -ext subjectAltName`]);
  assert.match(stdout, /DNS:agent\.web\.cleanroom\.localhost/);
});

test("hosts without a route get a 404 naming the routes; a guest port nobody listens on gets a 502", async () => {
  const notFound = await curl(`https://other.cleanroom.localhost:${httpsPort}/`, "-w", "\\n%{http_code}");
  assert.match(notFound, /no exposure route for "other\.cleanroom\.localhost:\d+"/);
  assert.match(notFound, /https:\/\/\*\.web\.cleanroom\.localhost:\d+\/\n/);
  assert.match(notFound, /404$/);
  const deeper = await curl(`https://a.b.web.cleanroom.localhost:${httpsPort}/`, "-k", "-w", "\\n%{http_code}");
  assert.match(deeper, /404$/, "* is one label, not any depth");
  const down = await curl(`https://down.cleanroom.localhost:${httpsPort}/`, "-w", "\\n%{http_code}");
  assert.match(down, /nothing answered on port \d+ in the sandbox[^]*502$/);
});

test("a streamed answer reaches the client while the guest is still writing it", async () => {
  const ca = readFileSync(caFile());
  const res = await new Promise<import("node:http").IncomingMessage>((resolve, reject) => {
    httpsRequest({ host: "127.0.0.1", port: httpsPort, path: "/stream", servername: "web.cleanroom.localhost", headers: { host: "web.cleanroom.localhost" }, ca }, resolve).on("error", reject).end();
  });
  const chunks: string[] = [];
  res.setEncoding("utf8");
  for await (const chunk of res) {
    chunks.push(chunk as string);
    if (chunks.length === 1) {
      assert.equal(chunk, "data: first\n\n");
      await curl(`https://web.cleanroom.localhost:${httpsPort}/go-ahead`);
    }
  }
  assert.equal(chunks.join(""), "data: first\n\ndata: second\n\n");
});

test("an upgrade becomes a tunnel: the guest's 101 and everything after it pass both ways", async () => {
  const { connect: tlsConnect } = await import("node:tls");
  const socket = tlsConnect({ host: "127.0.0.1", port: httpsPort, servername: "web.cleanroom.localhost", ca: readFileSync(caFile()) });
  await once(socket, "secureConnect");
  socket.write(`GET /socket HTTP/1.1\r\nHost: web.cleanroom.localhost:${httpsPort}\r\nConnection: Upgrade\r\nUpgrade: shout\r\n\r\n`);
  let received = "";
  socket.setEncoding("utf8");
  socket.on("data", (chunk: string) => {
    received += chunk;
    if (received.includes("\r\n\r\n") && !received.includes("hello")) socket.write("hello");
  });
  const deadline = Date.now() + 10_000;
  while (!received.includes("HELLO") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  socket.destroy();
  assert.match(received, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
  assert.match(received, /HELLO$/);
  const upgrade = seen.find((s) => s.url === "/socket")!.headers;
  assert.equal(upgrade.host, `web.cleanroom.localhost:${httpsPort}`);
  assert.equal(upgrade["x-forwarded-proto"], "https");
});

test("the CA is made once per directory, refuses names outside cleanroom.localhost, and cannot vouch for them even if its key is used directly", async () => {
  const [a, b] = await Promise.all([ExposureCa.loadOrCreate(caDir), ExposureCa.loadOrCreate(caDir)]);
  assert.equal(a.certPem, b.certPem);
  await assert.rejects(a.contextFor("bank.example"), { code: "invalid_argument", message: /not under cleanroom\.localhost/ });
  await assert.rejects(a.contextFor("*.web.cleanroom.localhost"), { code: "invalid_argument" });
  // sign a certificate for another name with the CA's own key, as someone who stole it would
  const work = mkdtempSync(join(tmpdir(), "cleanroom-ca-abuse-"));
  try {
    writeFileSync(join(work, "ext.cnf"), "subjectAltName=DNS:bank.example\n");
    await run("openssl", ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=bank.example", "-keyout", join(work, "k.pem"), "-out", join(work, "r.csr")]);
    await run("openssl", ["x509", "-req", "-in", join(work, "r.csr"), "-CA", caFile(), "-CAkey", join(caDir, "ca", "key.pem"), "-CAcreateserial", "-days", "1", "-extfile", join(work, "ext.cnf"), "-out", join(work, "leaf.pem")]);
    const verified = await run("openssl", ["verify", "-CAfile", caFile(), join(work, "leaf.pem")]).then(() => "accepted", (err: { stdout: string; stderr: string }) => `${err.stdout}${err.stderr}`);
    assert.match(verified, /permitted subtree violation/);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});
