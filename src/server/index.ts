export { startDaemon, version, type DaemonOptions, type RunningDaemon } from "./daemon.ts";
export { parseListenAddress } from "./listen.ts";
