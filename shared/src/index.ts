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
  ModelDescriptorSchema,
  PROTOCOL_VERSION,
  ResultHeaderSchema,
  TensorSpecSchema,
  type DeviceStatus,
  type Heartbeat,
  type JobErrorCode,
  type JobHeader,
  type JobTimings,
  type ModelDescriptor,
  type ResultHeader,
  type TensorSpec,
} from './messages.js'
export * from './tensor.js'
export * from './topics.js'
export * from './validate.js'
export * from './acl.js'
export { AttestationSchema, type AttestationWire } from './messages.js'
export * from './attestation.js'
export * from './merkle.js'
export * from './onnx-info.js'
export * from './seeded-random.js'
