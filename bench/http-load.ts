// A small closed-loop HTTP load generator, run both on the host and inside a sandbox (plain Node, no dependencies):
//   node http-load.ts <url> <concurrency> <duration-ms> [ca-file] [connect-to host:port]
// Keeps `concurrency` keep-alive requests in flight for the duration and prints one JSON line:
// {"requests", "errors", "seconds", "requestsPerSecond", "p50Ms", "p99Ms"}.
import { readFileSync } from "node:fs";
import { Agent as HttpAgent, request as httpRequest } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";

const [urlText, concurrencyText, durationText, caFile, connectTo] = process.argv.slice(2);
if (!urlText || !concurrencyText || !durationText) {
  process.stderr.write("usage: http-load.ts <url> <concurrency> <duration-ms> [ca-file] [connect-to host:port]\n");
  process.exit(2);
}
const url = new URL(urlText);
const concurrency = Math.min(Math.max(Number(concurrencyText), 1), 256);
const durationMs = Math.min(Math.max(Number(durationText), 100), 120_000);
const secure = url.protocol === "https:";
const agent = secure
  ? new HttpsAgent({ keepAlive: true, maxSockets: concurrency, ...(caFile ? { ca: readFileSync(caFile) } : {}) })
  : new HttpAgent({ keepAlive: true, maxSockets: concurrency });
const [connectHost, connectPort] = connectTo ? [connectTo.slice(0, connectTo.lastIndexOf(":")), Number(connectTo.slice(connectTo.lastIndexOf(":") + 1))] : [url.hostname, Number(url.port || (secure ? 443 : 80))];

function once(): Promise<boolean> {
  return new Promise((resolve) => {
    const send = secure ? httpsRequest : httpRequest;
    const req = send({
      agent, host: connectHost, port: connectPort, path: `${url.pathname}${url.search}`, method: "GET",
      headers: { host: url.host }, ...(secure ? { servername: url.hostname } : {}),
    }, (res) => {
      res.resume();
      res.once("end", () => resolve(res.statusCode === 200));
      res.once("error", () => resolve(false));
    });
    req.once("error", () => resolve(false));
    req.end();
  });
}

const latencies: number[] = [];
let errors = 0;
const start = performance.now();
const deadline = start + durationMs;
await Promise.all(Array.from({ length: concurrency }, async () => {
  while (performance.now() < deadline) {
    const t = performance.now();
    if (await once()) latencies.push(performance.now() - t);
    else errors++;
  }
}));
const seconds = (performance.now() - start) / 1000;
agent.destroy();
latencies.sort((a, b) => a - b);
const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * q))] ?? NaN;
process.stdout.write(`${JSON.stringify({ requests: latencies.length, errors, seconds, requestsPerSecond: latencies.length / seconds, p50Ms: at(0.5), p99Ms: at(0.99) })}\n`);
