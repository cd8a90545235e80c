// A daemon that dies: sets up sandbox networks one after another until the test SIGKILLs it.
// Argument: JSON { options: NetworkManagerOptions without resolver, ids: string[] }.
import { createNetworkManager, type NetworkManagerOptions } from "../../src/network/index.ts";

const { options, ids } = JSON.parse(process.argv[2] ?? "{}") as { options: NetworkManagerOptions; ids: string[] };
const net = await createNetworkManager({ ...options, disableDropLog: true });
process.stdout.write("started\n");
for (const id of ids) {
  await net.setUp({ sandboxId: id, stages: { dependencies: [{ host: "api.test", ports: [8080] }], execution: [] }, initialStage: "dependencies" });
  process.stdout.write(`up ${id}\n`);
}
setInterval(() => {}, 60_000);
