import type { MessageInitShape } from "@bufbuild/protobuf";
import { DoctorStatus, type DoctorResponseSchema } from "../api/index.ts";
import { probeHost } from "../backends/index.ts";
import { backendNamed } from "../config/index.ts";
import { DEFAULT_BASE_IMAGE_REF } from "../image/index.ts";
import type { DaemonContext } from "./daemon-context.ts";

const STATUS = { pass: DoctorStatus.PASS, warn: DoctorStatus.WARN, fail: DoctorStatus.FAIL } as const;

/** `doctor` as the daemon sees its host: the probes, its listener and auth, the gateway's upstream settings. */
export async function doctorReport(daemon: DaemonContext, backend: string): Promise<MessageInitShape<typeof DoctorResponseSchema>> {
  if (backend) backendNamed(backend, "--backend");
  const report = await probeHost({
    ...daemon.backendOptions,
    defaultImage: { ref: DEFAULT_BASE_IMAGE_REF, find: () => daemon.images.resolveLocal(DEFAULT_BASE_IMAGE_REF) },
    listener: { url: daemon.listenUrl, authRequired: daemon.authRequired },
  });
  const message = (c: (typeof report.checks)[number]) => ({ ...c, ok: c.status !== "fail", status: STATUS[c.status] });
  // a gateway problem (e.g. a GitHub App key that does not load) costs one upstream, not sandboxes: a warn
  const gateway = daemon.gateway.diagnose().map((c) => ({
    name: c.name,
    detail: c.detail,
    ok: true,
    status: c.ok ? DoctorStatus.PASS : DoctorStatus.WARN,
    hint: c.ok ? "" : "fix the gateway settings in the runtime config; the daemon log has the details",
  }));
  return {
    checks: [...report.checks.map(message), ...gateway],
    backends: report.backends
      .filter((b) => !backend || b.backend === backend)
      .map((b) => ({ backend: b.backend, usable: b.usable, checks: b.checks.map(message), capabilities: b.capabilities })),
    defaultBackend: daemon.defaultBackend,
  };
}
