import { test, before, after, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, writeFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isCleanroomError } from "../../src/errors/index.ts";
import { SandboxFiles, type AgentClient } from "../../src/agent-protocol/index.ts";
import { buildAgent, startAgent, removeDir, readAll, type RunningAgent } from "./agent-fixture.ts";

// The real agent runs a shell script in place of the file helper: what a compromised helper could print.

let agentDir = "";
let agent: RunningAgent;
let client: AgentClient;

before(async () => {
  const built = await buildAgent();
  agentDir = built.dir;
  agent = await startAgent(built.binary, agentDir);
  client = await agent.connect();
});

after(async () => {
  client?.close();
  await agent?.stop();
  if (agentDir) await removeDir(agentDir);
});

/** SandboxFiles whose helper is `script` (sh); the script's dir is removed when the test ends. */
async function filesWithHelper(t: TestContext, script: string): Promise<SandboxFiles> {
  const dir = await mkdtemp(join(tmpdir(), "cleanroom-hostile-helper-"));
  t.after(() => removeDir(dir));
  const path = join(dir, "helper");
  writeFileSync(path, `#!/bin/sh\n${script}\n`);
  chmodSync(path, 0o755);
  return new SandboxFiles(client, { agentPath: path });
}

const header = (size: number) => JSON.stringify({ path: "/f", type: "file", mode: 420, size, mtimeSec: 0, mtimeNsec: 0, uid: 0, gid: 0 });
const isProtocolError = (err: unknown) => isCleanroomError(err, "agent_protocol_error");

test("a read whose helper sends fewer bytes than its header promised errors the content stream", async (t) => {
  const files = await filesWithHelper(t, `printf '%s\\n12345' '${header(10)}'`);
  const { entry, content } = await files.read("/f", { maxBytes: 100 });
  assert.equal(entry.size, 10);
  await assert.rejects(readAll(content), isProtocolError);
});

test("a read whose helper sends more bytes than promised errors the content stream", async (t) => {
  const files = await filesWithHelper(t, `printf '%s\\n' '${header(3)}'; yes`);
  const { content } = await files.read("/f", { maxBytes: 100 });
  await assert.rejects(readAll(content), isProtocolError);
});

test("a helper that floods stdout with a result is killed, and the call fails as a protocol error", async (t) => {
  const files = await filesWithHelper(t, "yes");
  await assert.rejects(files.stat("/f"), isProtocolError);
});

test("a helper that floods stderr is killed, and the call fails as a protocol error", async (t) => {
  const files = await filesWithHelper(t, "yes >&2");
  await assert.rejects(files.remove("/f"), isProtocolError);
});

test("a helper error with an unknown code is internal, with a printable message", async (t) => {
  const files = await filesWithHelper(t, `printf '{"code":"root_me","message":"bad\\\\u001b[31m news"}\\n' >&2; exit 1`);
  await assert.rejects(files.stat("/f"), (err) => {
    assert.ok(isCleanroomError(err, "internal"), String(err));
    assert.equal(err.message, "sandbox file stat: bad?[31m news");
    return true;
  });
});

test("an archive larger than its content limit plus tar overhead errors the stream", async (t) => {
  const files = await filesWithHelper(t, "yes");
  await assert.rejects(readAll(files.archive("/", ["."], { maxBytes: 0, maxEntries: 1 })), isProtocolError);
});
