export { hostPaths, defaultSocketPath, packageRoot, type HostPaths } from "./paths.ts";
export { sandboxIdRange, toHostId, type IdRange } from "./id-range.ts";
