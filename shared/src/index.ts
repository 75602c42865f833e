export * from './address.js'
export * from './bytes.js'
export * from './datatypes.js'
export * from './errors.js'
export * from './float16.js'
export * from './frame.js'
export * from './hash.js'
export {
  DeviceStatusSchema,
  HeartbeatSchema,
  JobErrorCodeSchema,
  JobHeaderSchema,
  JobTimingsSchema,
  MODEL_VARIANTS,
  DEFAULT_MAX_MODEL_BYTES,
  DEVICE_STALE_AFTER_MS,
  MODEL_ERROR_MAX_CHARS,
  ModelDescriptorSchema,
  PROTOCOL_VERSION,
  PublishedVariantSchema,
  ResultHeaderSchema,
  TensorSpecSchema,
  VariantReportSchema,
  type DeviceStatus,
  type Heartbeat,
  type JobErrorCode,
  type JobHeader,
  type JobTimings,
  type ModelDescriptor,
  type ModelVariant,
  type PublishedVariant,
  type ResultHeader,
  type TensorSpec,
  type VariantReport,
} from './messages.js'
export * from './tensor.js'
export * from './topics.js'
export * from './validate.js'
export * from './versions.js'
export * from './acl.js'
export { AttestationSchema, type AttestationWire } from './messages.js'
export * from './attestation.js'
export { EcdsaNonces } from './ecdsa-nonces.js'
export * from './merkle.js'
export * from './onnx-info.js'
export { onnxSkeleton, type SkeletonOptions } from './onnx-skeleton.js'
export * from './protobuf-wire.js'
export * from './seeded-random.js'
export * from './text.js'
export * from './variants.js'
export * from './device-key-proof.js'
