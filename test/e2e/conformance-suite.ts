// Cleanroom's egress conformance (spec §14) through the real daemon, a backend (runc or runsc), nftables and the DNS
// policy server, against an upstream host in a netns this suite makes. The workload is curl in the default image.
// Each backend's test file runs it with the daemon's default_backend set to that backend.
import { execFileSync } from "node:child_process";
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { suiteCleanup } from "../fixtures/cleanup.ts";
import { hostResourcesOf, runCli, type TestDaemon } from "../fixtures/daemon.ts";
import { missingRuntime } from "../fixtures/isolation.ts";
import { startDaemonWithUpstream, type Upstream } from "../fixtures/upstream.ts";

export function conformanceSuite(backend: "linux" | "gvisor"): void {
  const skip = missingRuntime(backend);
  const suite = suiteCleanup();
  let daemon: TestDaemon;
  let upstream: Upstream;
  let baseImage: string;

  before(async () => {
    if (skip) return;
    ({ daemon, upstream, baseImage } = await startDaemonWithUpstream(suite, {
      ifPrefix: backend === "gvisor" ? "ug" : "uc",
      names: ["api.test", "other.test"],
      extraRecords: { "meta.test": ["169.254.169.254"] },
      config: `default_backend: ${backend}\n`,
    }));
  });

  function repository(network: string): string {
    const dir = mkdtempSync(join(tmpdir(), "cleanroom-conformance-"));
    suite.after(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, "cleanroom.yaml"), `version: 1\nsandbox:\n  image:\n    ref: ${baseImage}\n  network:\n${network}`);
    return dir;
  }

  /** A kept sandbox for the repository's policy, removed after the suite. */
  async function sandboxFor(dir: string, extra: string[] = []): Promise<string> {
    const created = await runCli(["create", ...extra], daemon.env, undefined, 60_000, dir);
    assert.equal(created.code, 0, created.stderr);
    const id = created.stdout.trim();
    suite.after(() => daemon.cli(["sandbox", "rm", id]));
    return id;
  }

  /** curl from inside: the HTTP body, or curl's error (exit code and message). */
  async function curl(id: string, url: string): Promise<{ ok: boolean; text: string; stderr: string }> {
    const result = await daemon.cli(["exec", "--in", id, "--", "curl", "-sS", "--max-time", "4", url]);
    return { ok: result.code === 0, text: result.code === 0 ? result.stdout : result.stderr, stderr: result.stderr };
  }

  const allowApi8080 = "    allow:\n      - api.test:8080\n";

  test(`[${backend}] an allowed host:port is reachable by name, and another port on the same host is not`, { skip }, async () => {
    const id = await sandboxFor(repository(allowApi8080));
    const allowed = await curl(id, "http://api.test:8080/");
    assert.ok(allowed.ok, allowed.text);
    const otherPort = await curl(id, "http://api.test:9090/");
    assert.equal(otherPort.ok, false);
    assert.match(otherPort.text, /Connection refused|Failed to connect/);
    assert.match(otherPort.stderr, new RegExp(`cleanroom: warning: blocked tcp connection to ${upstream.address.replaceAll(".", "\\.")}:9090 \\(host_not_allowed\\)`));
    const events = JSON.parse((await daemon.cli(["sandbox", "inspect", id, "--json"])).stdout).events as { type: string; reason_code: string; attributes: Record<string, string> }[];
    assert.ok(events.some((e) => e.type === "connection_blocked" && e.reason_code === "host_not_allowed" && e.attributes.destination === upstream.address && e.attributes.port === "9090"), JSON.stringify(events));
  });

  test(`[${backend}] an unlisted name is refused by DNS and reported; an IP literal is not reachable`, { skip }, async () => {
    const id = await sandboxFor(repository(allowApi8080));
    const unlisted = await curl(id, "http://other.test:8080/");
    assert.equal(unlisted.ok, false);
    assert.match(unlisted.text, /Could not resolve host/);
    const literal = await curl(id, `http://${upstream.address}:9090/`);
    assert.equal(literal.ok, false);
    const events = JSON.parse((await daemon.cli(["sandbox", "inspect", id, "--json"])).stdout).events as { type: string; attributes: Record<string, string> }[];
    assert.ok(events.some((e) => e.type === "dns_query_denied" && e.attributes.name === "other.test"), JSON.stringify(events));
  });

  test(`[${backend}] no policy means no egress at all`, { skip }, async () => {
    const result = await daemon.cli(["exec", "--", "curl", "-sS", "--max-time", "4", `http://${upstream.address}:8080/`]);
    assert.notEqual(result.code, 0);
  });

  test(`[${backend}] the metadata address, the host's own ports and other sandboxes are unreachable`, { skip }, async () => {
    const dir = repository(allowApi8080);
    const id = await sandboxFor(dir);
    const other = await sandboxFor(dir);
    const mine = sandboxAddress(id);
    const theirs = sandboxAddress(other);
    assert.match(mine, /^10\.216\.\d+\.\d+$/);
    const gatewaySide = mine.replace(/\.(\d+)$/, (_m, last: string) => `.${Number(last) - 1}`);
    assert.equal((await curl(id, "http://169.254.169.254/")).ok, false);
    assert.equal((await curl(id, `http://${gatewaySide}:22/`)).ok, false, "a host port other than gateway and DNS");
    assert.equal((await curl(id, `http://${upstream.hostSide}:8080/`)).ok, false, "another host address");
    assert.equal((await curl(id, `http://${theirs}:8080/`)).ok, false, "another sandbox");
  });

  test(`[${backend}] IPv6 is off inside the sandbox`, { skip }, async () => {
    const id = await sandboxFor(repository(allowApi8080));
    assert.equal(inSandboxNetns(id, ["sysctl", "-n", "net.ipv6.conf.all.disable_ipv6"]), "1");
    const v6 = await daemon.cli(["exec", "--in", id, "--", "curl", "-sS", "-g", "--max-time", "4", "http://[::1]:8080/"]);
    assert.notEqual(v6.code, 0, "not even IPv6 loopback answers");
  });

  /** The sandbox's IPv4 address, read from its netns on the host (what the backend's guest shows of /proc varies). */
  function sandboxAddress(id: string): string {
    return inSandboxNetns(id, ["ip", "-4", "-o", "addr", "show", "scope", "global"]).match(/inet (\d+\.\d+\.\d+\.\d+)/)?.[1] ?? "";
  }

  function inSandboxNetns(id: string, argv: string[]): string {
    return execFileSync("ip", ["netns", "exec", `${daemon.network.prefix}${id}`, ...argv], { encoding: "utf8", timeout: 10_000 }).trim();
  }

  test(`[${backend}] stage blocks apply per stage: execution gets its own list, not the dependencies one`, { skip }, async () => {
    const id = await sandboxFor(repository("    dependencies:\n      allow: [api.test:9090]\n    execution:\n      allow: [api.test:8080]\n"));
    assert.ok((await curl(id, "http://api.test:8080/")).ok);
    assert.equal((await curl(id, "http://api.test:9090/")).ok, false);
  });

  test(`[${backend}] --dangerously-allow-all opens egress but never the metadata address, and inspect says so`, { skip }, async () => {
    const result = await daemon.cli(["create", "--dangerously-allow-all"]);
    const id = result.stdout.trim();
    suite.after(() => daemon.cli(["sandbox", "rm", id]));
    assert.ok((await curl(id, `http://${upstream.address}:9090/`)).ok);
    assert.equal((await curl(id, "http://169.254.169.254/")).ok, false);
    assert.match((await daemon.cli(["sandbox", "inspect", id])).stdout, /egress is NOT restricted/);
  });

  test(`[${backend}] terminating a sandbox removes its netns, veth and nftables chains`, { skip }, async () => {
    const id = await sandboxFor(repository(allowApi8080));
    assert.ok(hostResourcesOf(daemon, id).includes("netns"));
    assert.equal((await daemon.cli(["sandbox", "rm", id])).code, 0);
    assert.deepEqual(hostResourcesOf(daemon, id), []);
    assert.ok(!readdirSync("/run/netns").some((n) => n.includes(id)));
  });
}
