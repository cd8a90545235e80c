import { pino, type Logger } from "pino";

export type { Logger };

/** The daemon's logger: one JSON event per line on stderr, ids as fields. */
export function createLogger(level: string = process.env.CLEANROOM_LOG_LEVEL ?? "info"): Logger {
  return pino({ level, base: { service: "cleanroom" } }, pino.destination({ dest: 2, sync: false }));
}

/** A logger that drops everything; for tests and library callers that bring none. */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}
