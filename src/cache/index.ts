/**
 * The environment cache: keys of dependency and service blocks (from policy, image, declared inputs at the
 * commit, toolchain manifests and earlier blocks), the host store of their published outputs (overlay layers),
 * and the escaped-write check that decides whether a block's outputs may be published at all.
 */
export {
  blockKey, blockKeyParts, expandBlockValue, matchInputs, missReason, outputPath, toolchainFiles,
  CACHE_LAYOUT_VERSION, TOOLCHAIN_MANIFESTS, type BlockKeyParts, type InputMatch, type TreeEntry,
} from "./block-key.ts";
export { BlockCache, diskUsage, outputCapacityBytes, DEFAULT_MINIMUM_OUTPUT_BYTES, type BlockRecord } from "./block-store.ts";
export { escapedWrites, SCRATCH_PATHS } from "./escaped-writes.ts";
