import type { BackendName, createLinuxBackend } from "../backends/index.ts";
import type { BlockCache } from "../cache/index.ts";
import type { Gateway } from "../gateway/index.ts";
import type { ImageStore } from "../image/index.ts";
import type { SandboxSupervisor } from "../sandbox/index.ts";

/** What the API routes are served from. */
export interface DaemonContext {
  supervisor: SandboxSupervisor;
  images: ImageStore;
  gateway: Pick<Gateway, "diagnose" | "cacheDirs">;
  blockCache: BlockCache;
  /** the daemon's state dir (executions, sandboxes) */
  stateDir: string;
  defaultBackend: BackendName;
  backendOptions: Parameters<typeof createLinuxBackend>[0];
  version: string;
  agentProtocolVersion: number;
  /** the API listener as configured (`--listen`), for doctor's listener check */
  listenUrl: string;
  /** the runtime config requires authenticated callers (doctor: a non-loopback listener without it fails) */
  authRequired: boolean;
  /** `observability.traces.url_template`: a trace's URL with `{trace_id}` filled in */
  traceUrlTemplate?: string;
}
