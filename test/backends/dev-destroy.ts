import { createLinuxBackend } from "../../src/backends/index.ts";
import { sandboxIdRange } from "../../src/config/index.ts";
const [root, id] = process.argv.slice(2) as [string, string];
const b = createLinuxBackend({ stateDir: root + "/state", runDir: root + "/run", agentPath: "/tmp/fakeagent/fake-agent", idRange: sandboxIdRange });
await b.destroy(id); console.log(await b.state(id), await b.listSandboxIds());
