import { mkdtemp, chmod } from "node:fs/promises";
import { createLinuxBackend } from "../../src/backends/index.ts";
import { busyboxLayer, firstBytesFromAgent, newSandboxId } from "./fixtures.ts";
import { sandboxIdRange } from "../../src/config/index.ts";
import { createLogger } from "../../src/observability/index.ts";
const root = await mkdtemp("/tmp/devscratch/w-"); await chmod(root, 0o711);
const base = await busyboxLayer(root + "/base", sandboxIdRange.hostBase);
const b = createLinuxBackend({ stateDir: root + "/state", runDir: root + "/run", agentPath: "/tmp/fakeagent/fake-agent", idRange: sandboxIdRange, logger: createLogger("debug") });
const id = newSandboxId();
try {
  const l = await b.launch({ sandboxId: id, lowerDirs: [base], imageConfig: { env: [], workingDir: "/", user: "" }, resources: { vcpus: 1, memoryMiB: 256, pidsLimit: 100 } });
  console.log(l, await b.state(id));
  console.log(String(await firstBytesFromAgent(l.agentSocketPath)));
  console.log(await b.listSandboxIds());
} catch (e) { console.error(e); }
await b.destroy(id);
console.log(await b.state(id), await b.listSandboxIds());
