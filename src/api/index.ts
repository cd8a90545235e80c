// The cleanroom.v1 API: generated protobuf-es schemas and service descriptors (src/api/gen, `npm run generate`).
export * from "./gen/cleanroom/v1/sandbox_pb.js";
export * from "./gen/cleanroom/v1/execution_pb.js";
export * from "./gen/cleanroom/v1/image_pb.js";
export * from "./gen/cleanroom/v1/snapshot_pb.js";
