// The gvisor backend end to end: the linux backend's bundle run by runsc (gVisor's user-space kernel, ptrace platform
// here) under a real daemon, with the daemon's netns, nftables egress rules and DNS policy server around it, and
// against an upstream host in a netns this suite makes. Skipped when runsc is not installed.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { release, tmpdir } from "node:os";
import { join } from "node:path";
import { before, test } from "node:test";
import { suiteCleanup } from "../fixtures/cleanup.ts";
import { hostResourcesOf, runCli, type TestDaemon } from "../fixtures/daemon.ts";
import { assertHostHidden, missingRuntime } from "../fixtures/isolation.ts";
import { startDaemonWithUpstream, type Upstream } from "../fixtures/upstream.ts";

const skip = missingRuntime("gvisor");

const suite = suiteCleanup();
let daemon: TestDaemon;
let upstream: Upstream;
let baseImage: string;

before(async () => {
  if (skip) return;
  ({ daemon, upstream, baseImage } = await startDaemonWithUpstream(suite, { ifPrefix: "ug", names: ["api.test"] }));
});

/**
 * runsc's own view of a sandbox (its state root is `<runDir>/runsc`), undefined once runsc forgot it. runsc talks to
 * its sandbox over an abstract socket in the sandbox's netns, so it is asked from there.
 */
function runscState(id: string): { status: string; pid: number } | undefined {
  const netnsFile = join(daemon.stateDir, "sandboxes", id, "netns");
  const netns = existsSync(netnsFile) ? [`--net=${readFileSync(netnsFile, "utf8").trim()}`] : [];
  try {
    const out = execFileSync("nsenter", [...netns, "--", "runsc", "--root", join(daemon.runDir, "runsc"), "state", id], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
    return JSON.parse(out) as { status: string; pid: number };
  } catch {
    return undefined;
  }
}

/** A kept gvisor sandbox, removed after the suite; `cwd` with a cleanroom.yaml gives it that policy. */
async function gvisorSandbox(cwd?: string): Promise<string> {
  const created = await runCli(["create", "--backend", "gvisor"], daemon.env, undefined, 60_000, cwd);
  assert.equal(created.code, 0, created.stderr);
  const id = created.stdout.trim();
  suite.after(() => daemon.cli(["sandbox", "rm", id]));
  return id;
}

function repository(sandboxYaml: string): string {
  const dir = mkdtempSync(join(tmpdir(), "cleanroom-gvisor-"));
  suite.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, "cleanroom.yaml"), `version: 1\nsandbox:\n  image:\n    ref: ${baseImage}\n${sandboxYaml}`);
  return dir;
}

test("exec --backend gvisor runs the workload on gVisor's kernel, not the host's", { skip }, async () => {
  const result = await daemon.cli(["exec", "--backend", "gvisor", "--", "uname", "-a"]);
  assert.equal(result.code, 0, result.stderr);
  const kernel = result.stdout.split(" ")[2];
  assert.notEqual(kernel, release(), "the host's kernel answered");
  assert.match(result.stdout, /^Linux \S+ 4\.4\.0 /, "gVisor reports itself as Linux 4.4.0");
});

test("stdin, stdout, stderr and the exit code pass through a gvisor sandbox", { skip }, async () => {
  const input = "line one\nline two\n".repeat(500);
  const result = await daemon.cli(["exec", "--backend", "gvisor", "--", "sh", "-c", "cat; echo to-stderr >&2; exit 7"], { input });
  assert.equal(result.stdout, input);
  assert.equal(result.stderr, "to-stderr\n");
  assert.equal(result.code, 7);
});

test("console gives a gvisor workload a terminal", { skip }, async () => {
  const result = await daemon.cli(["console", "--backend", "gvisor", "--", "sh", "-c", "tty; stty size"]);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /^\/dev\/pts\/\d+\r?\n/);
});

test("files copy in and out, and a port inside is dialled from the host", { skip }, async () => {
  const id = await gvisorSandbox();
  const local = mkdtempSync(join(tmpdir(), "cleanroom-gvisor-cp-"));
  suite.after(() => rmSync(local, { recursive: true, force: true }));
  writeFileSync(join(local, "in.txt"), "sent in\n");
  const copiedIn = await daemon.cli(["cp", join(local, "in.txt"), `${id}:/root/in.txt`]);
  assert.equal(copiedIn.code, 0, copiedIn.stderr);
  const edited = await daemon.cli(["exec", "--in", id, "--", "sh", "-c", "tr a-z A-Z < /root/in.txt > /root/out.txt"]);
  assert.equal(edited.code, 0, edited.stderr);
  const copiedOut = await daemon.cli(["cp", `${id}:/root/out.txt`, join(local, "out.txt")]);
  assert.equal(copiedOut.code, 0, copiedOut.stderr);
  assert.equal(readFileSync(join(local, "out.txt"), "utf8"), "SENT IN\n");

  const busybox = await daemon.cli(["cp", "/bin/busybox", `${id}:/usr/local/bin/busybox`]);
  assert.equal(busybox.code, 0, busybox.stderr);
  const served = await daemon.cli(["exec", "--in", id, "--", "sh", "-c", "mkdir -p /srv && echo gvisor-dial-ok > /srv/index.html && busybox httpd -p 127.0.0.1:3000 -h /srv"]);
  assert.equal(served.code, 0, served.stderr);
  const sandbox = daemon.client.sandbox(id);
  const fetchIndex = async () => {
    const connection = await sandbox.dialPort(3000);
    connection.end("GET /index.html HTTP/1.0\r\n\r\n");
    let answer = "";
    for await (const chunk of connection) answer += (chunk as Buffer).toString();
    return answer;
  };
  // httpd daemonizes; under gVisor its first accepted connection has been seen to close unanswered while it settles
  let answer = await fetchIndex();
  for (let tries = 1; !answer && tries < 10; tries++) {
    await new Promise((r) => setTimeout(r, 200));
    answer = await fetchIndex();
  }
  assert.match(answer, /gvisor-dial-ok/);
});

test("suspend pauses the gVisor kernel, resume continues it", { skip }, async () => {
  const id = await gvisorSandbox();
  assert.equal((await daemon.cli(["exec", "--in", id, "--", "sh", "-c", "echo before > /root/state"])).code, 0);
  const suspended = await daemon.cli(["sandbox", "suspend", id]);
  assert.equal(suspended.stdout.trim(), `${id} SUSPENDED`, suspended.stderr);
  assert.equal(runscState(id)?.status, "paused");
  const resumed = await daemon.cli(["sandbox", "resume", id]);
  assert.equal(resumed.stdout.trim(), `${id} READY`, resumed.stderr);
  assert.equal(runscState(id)?.status, "running");
  assert.equal((await daemon.cli(["exec", "--in", id, "--", "cat", "/root/state"])).stdout, "before\n");
});

test("egress: an allowed host:port is reachable by name, another port on it is refused", { skip }, async () => {
  const id = await gvisorSandbox(repository("  network:\n    allow:\n      - api.test:8080\n"));
  const allowed = await daemon.cli(["exec", "--in", id, "--", "curl", "-sS", "--max-time", "5", "http://api.test:8080/"]);
  assert.equal(allowed.code, 0, allowed.stderr);
  const denied = await daemon.cli(["exec", "--in", id, "--", "curl", "-sS", "--max-time", "4", "http://api.test:9090/"]);
  assert.notEqual(denied.code, 0, denied.stdout);
  const literal = await daemon.cli(["exec", "--in", id, "--", "curl", "-sS", "--max-time", "4", `http://${upstream.address}:9090/`]);
  assert.notEqual(literal.code, 0, "an IP literal is not allowed either");
  const events = await daemon.cli(["exec", "--in", id, "--", "getent", "hosts", "not-listed.test"]);
  assert.notEqual(events.code, 0, "DNS for an unlisted name is refused");
});

test("a gvisor sandbox sees neither host processes nor host files", { skip }, async () => {
  await assertHostHidden(daemon, ["--backend", "gvisor"]);
});

test("a gvisor sandbox cannot mount filesystems or load kernel modules", { skip }, async () => {
  // mount(2) itself, syscall 165 (mount(8) stats the target first, which this gVisor's statx refuses)
  const mount = await daemon.cli(["exec", "--backend", "gvisor", "--", "perl", "-e", 'my ($s, $t, $f) = ("none", "/mnt", "tmpfs"); syscall(165, $s, $t, $f, 0, 0) == -1 or die "mount succeeded"; print $!+0']);
  assert.equal(mount.stdout, "1", `mount failed with errno ${mount.stdout} ${mount.stderr}`); // EPERM
  // init_module(2), syscall 175 on x86_64: refused by the seccomp profile (EPERM) or absent from gVisor (ENOSYS)
  const module = await daemon.cli(["exec", "--backend", "gvisor", "--", "perl", "-e", 'my $b = "x"; syscall(175, $b, 1, $b) == -1 or die "init_module succeeded"; print $!+0']);
  assert.ok(["1", "38"].includes(module.stdout), `init_module failed with errno ${module.stdout} ${module.stderr}`);
});

test("a policy the backend cannot enforce fails closed with backend_capability_mismatch", { skip }, async () => {
  const dir = repository("  docker:\n    required: true\n");
  const created = await runCli(["create", "--backend", "gvisor"], daemon.env, undefined, 60_000, dir);
  assert.notEqual(created.code, 0);
  assert.match(created.stderr, /backend_capability_mismatch/);
});

test("terminate leaves no host resources and no runsc process behind", { skip }, async () => {
  const id = await gvisorSandbox();
  const state = runscState(id);
  assert.equal(state?.status, "running");
  const cgroupProcs = join("/sys/fs/cgroup/pids/cleanroom", id, "cgroup.procs");
  const pids = [state!.pid, ...(existsSync(cgroupProcs) ? readFileSync(cgroupProcs, "utf8").split("\n").filter(Boolean).map(Number) : [])];
  const runscPids = pids.filter((pid) => /runsc/.test(readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ")));
  assert.ok(runscPids.length >= 2, `the sandbox and gofer processes: ${runscPids.join(", ")}`);
  assert.notDeepEqual(hostResourcesOf(daemon, id), []);
  const removed = await daemon.cli(["sandbox", "rm", id]);
  assert.equal(removed.code, 0, removed.stderr);
  assert.deepEqual(hostResourcesOf(daemon, id), []);
  assert.equal(runscState(id), undefined);
  assert.deepEqual(readdirSync(join(daemon.runDir, "runsc")).filter((f) => f.startsWith(id)), []);
  assert.deepEqual(runscPids.filter((pid) => existsSync(`/proc/${pid}`)), [], "runsc processes outlived the sandbox");
});
