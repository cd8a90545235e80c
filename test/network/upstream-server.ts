// The "upstream" of the network tests, run by the test inside a netns it created (`ip netns exec`):
// HTTP servers that answer with their port, a DNS view of test names, and byte sinks for the throughput bench.
// Argument: JSON { address, httpPorts, sinkPorts?, dns?: { port, ttl, records: { name: address[] } } }. Prints "ready".
import { createServer } from "node:http";
import { createServer as createTcpServer } from "node:net";
import { createSocket } from "node:dgram";
import dnsPacket from "dns-packet";

interface Config {
  address: string;
  httpPorts: number[];
  sinkPorts?: number[];
  dns?: { port: number; ttl: number; records: Record<string, string[]> };
}

const config = JSON.parse(process.argv[2] ?? "{}") as Config;
const listening: Promise<void>[] = [];

for (const port of config.httpPorts) {
  const server = createServer((req, res) => {
    res.setHeader("content-type", "text/plain");
    res.end(`upstream ${port} ${req.url}\n`);
  });
  server.keepAliveTimeout = 60_000;
  listening.push(new Promise((resolve) => server.listen(port, config.address, () => resolve())));
}

// a sink reads everything and, when the sender ends, answers with the byte count
for (const port of config.sinkPorts ?? []) {
  const server = createTcpServer((socket) => {
    let bytes = 0;
    socket.on("data", (c: Buffer) => (bytes += c.length));
    socket.on("end", () => socket.end(`${bytes}\n`));
    socket.on("error", () => socket.destroy());
  });
  listening.push(new Promise((resolve) => server.listen(port, config.address, () => resolve())));
}

if (config.dns) {
  const { port, ttl, records } = config.dns;
  const udp = createSocket("udp4");
  udp.on("message", (msg, rinfo) => {
    let query: dnsPacket.DecodedPacket;
    try {
      query = dnsPacket.decode(msg);
    } catch {
      return;
    }
    const q = query.questions?.[0];
    if (!q) return;
    const name = q.name.toLowerCase();
    const addresses = records[name];
    const reply = dnsPacket.encode({
      type: "response",
      id: query.id ?? 0,
      flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | (addresses ? 0 : 3), // 3 = NXDOMAIN
      questions: [q],
      answers: addresses && q.type === "A" ? addresses.map((data) => ({ type: "A" as const, name: q.name, ttl, data })) : [],
    });
    udp.send(reply, rinfo.port, rinfo.address);
  });
  listening.push(new Promise((resolve) => udp.bind(port, config.address, () => resolve())));
}

await Promise.all(listening);
process.stdout.write("ready\n");
