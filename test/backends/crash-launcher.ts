/**
 * A "daemon" for the crash test: launches one sandbox and is SIGKILLed by the test somewhere in the
 * middle. Args: stateDir runDir agentPath sandboxId lowerDir…
 */
import { createLinuxBackend } from "../../src/backends/index.ts";
import { sandboxIdRange } from "../../src/config/index.ts";

const [stateDir, runDir, agentPath, sandboxId, ...lowerDirs] = process.argv.slice(2);
if (!stateDir || !runDir || !agentPath || !sandboxId || lowerDirs.length === 0) throw new Error("usage: crash-launcher stateDir runDir agentPath id lowerDir…");
const backend = createLinuxBackend({ stateDir, runDir, agentPath, idRange: sandboxIdRange });
process.stdout.write("launching\n");
await backend.launch({
  sandboxId,
  lowerDirs,
  imageConfig: { env: [], workingDir: "/", user: "" },
  resources: { vcpus: 1, memoryMiB: 256, pidsLimit: 128 },
});
process.stdout.write("launched\n");
