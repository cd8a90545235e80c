import { test } from "node:test";
import assert from "node:assert/strict";
import { loadRuntimeConfig } from "../../src/config/index.ts";
import { configFile } from "../fixtures/config-file.ts";


test("observability settings are read as written", async (t) => {
  const path = configFile(t, [
    "observability:",
    "  enabled: true",
    "  logs: { format: text }",
    "  otlp: { endpoint: \"https://otel.example:4318\", protocol: http/protobuf, headers: { x-team: infra } }",
    "  traces: { sampling: 0.25, url_template: \"https://tempo.example/trace/{trace_id}\" }",
    "",
  ].join("\n"));
  assert.deepEqual((await loadRuntimeConfig(path)).observability, {
    enabled: true,
    logs: { format: "text" },
    otlp: { endpoint: "https://otel.example:4318", protocol: "http/protobuf", headers: { "x-team": "infra" } },
    traces: { sampling: 0.25, url_template: "https://tempo.example/trace/{trace_id}" },
  });
});

test("observability mistakes are refused with their place in the file", async (t) => {
  const refused = (yaml: string, message: RegExp) => assert.rejects(async () => loadRuntimeConfig(configFile(t, yaml)), message);
  await refused("observability:\n  enabled: true\n", /otlp\.endpoint/);
  await refused("observability:\n  otlp: { endpoint: \"http://otel.example:4318\" }\n", /insecure/);
  await refused("observability:\n  otlp: { protocol: grpc }\n", /protocol/);
  await refused("observability:\n  traces: { sampling: 2 }\n", /sampling/);
  await refused("observability:\n  traces: { url_template: \"https://tempo.example/trace\" }\n", /\{trace_id\}/);
  await refused("observability:\n  exporter: otlp\n", /exporter/);
});

test("plain http to a collector beyond loopback is allowed with insecure: true", async (t) => {
  const config = await loadRuntimeConfig(configFile(t, "observability:\n  otlp: { endpoint: \"http://otel.example:4318\", insecure: true }\n"));
  assert.equal(config.observability?.otlp?.insecure, true);
});
