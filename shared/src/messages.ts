/**
 * Schemas of every message on the wire, validated at each boundary with zod.
 * Types are inferred from the schemas so the two never drift.
 */
import { z } from 'zod'
import { ADDRESS_PATTERN } from './address.js'
import { VersionSchema } from './versions.js'
import { DATATYPES } from './datatypes.js'
import { cutToLength } from './text.js'
import { ID_PATTERN } from './topics.js'

/**
 * Every status, job and result carries it; a peer on another version is refused at the schema.
 * 2: input commitments and output hashes are SHA-256 (were keccak256), so a v1 device's
 * attestations could not verify.
 * 3: a jobs or results message may carry several frames back to back (shared/frame.ts); a v2
 * peer would read the first and silently drop the rest.
 */
export const PROTOCOL_VERSION = 3

const id = z.string().regex(ID_PATTERN, 'must be 1-64 letters, digits, ".", "_" or "-"')
const Sha256Schema = z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex digits')
const count = z.number().int().nonnegative()

/** A model input or output; `-1` marks a dynamic dimension (as in v2 model metadata). */
export const TensorSpecSchema = z.object({
  name: z.string().min(1),
  datatype: z.enum(DATATYPES),
  shape: z.array(z.number().int().min(-1)),
})
export type TensorSpec = z.infer<typeof TensorSpecSchema>

/**
 * The files a published model version can be run from (issue 6): `fp32`, the version's own file
 * (the one its sha256 names), and `int8`, a quantized file published with the version.
 */
export const MODEL_VARIANTS = ['fp32', 'int8'] as const
export type ModelVariant = (typeof MODEL_VARIANTS)[number]

const share = z.number().min(0).max(1)

/**
 * How closely a variant follows the version's own file, as its publisher measured it on sample
 * inputs (`depinfer models publish --int8`). The edge cannot measure it again (there is no
 * onnxruntime in Workers): it is the publisher's claim about its own model.
 */
export const VariantReportSchema = z.object({
  /** Share of positions (inputs, or time steps) whose top-1 class is the same as fp32's: the lowest over `classOutputs`. */
  top1Agreement: share,
  /**
   * The outputs top1Agreement was judged on, when the publisher named them (`--class-output`).
   * Absent otherwise: then every output that has a top-1 agreement (a class axis, or values that
   * are not floating point) was judged, as before this field existed.
   */
  classOutputs: z.array(z.string().min(1)).min(1).optional(),
  /** The largest absolute difference from fp32 over every output value (finite). */
  maxAbsError: z.number().nonnegative(),
  /** Sample inputs both files were run on. */
  samples: z.number().int().positive(),
})
export type VariantReport = z.infer<typeof VariantReportSchema>

/** A variant as the edge lists it with its version (`GET /api/models`). */
export const PublishedVariantSchema = z.object({
  kind: z.literal('int8'),
  sha256: Sha256Schema,
  size: z.number().int().positive(),
  report: VariantReportSchema,
  /** The publisher's threshold: the least top-1 agreement at which devices may run the variant. */
  minAgreement: share,
})
export type PublishedVariant = z.infer<typeof PublishedVariantSchema>

/** Longest load error a device advertises for a model (ModelDescriptor.error). */
export const MODEL_ERROR_MAX_CHARS = 300

/** What a device states about each model it serves: exactly what it can run, nothing implied. */
export const ModelDescriptorSchema = z.object({
  name: id,
  version: VersionSchema,
  sha256: Sha256Schema,
  platform: z.literal('onnxruntime_onnx'),
  inputs: z.array(TensorSpecSchema).min(1),
  outputs: z.array(TensorSpecSchema).min(1),
  /** Largest batch the device stacks along dimension 0; 1 when it does not batch. */
  maxBatch: z.number().int().positive(),
  /** `ready` once the session is loaded; a loading model is advertised but not routed to. */
  state: z.enum(['ready', 'loading', 'failed']),
  /** The onnxruntime execution provider the model's session runs on (e.g. `cuda`, `cpu`). */
  executionProvider: z.string().optional(),
  /**
   * Where its session runs: 'agent-thread' (the agent's own, blocked while a run lasts),
   * 'worker-thread' or 'child-process'. A string, so that a newer agent's value never makes its
   * status unparseable.
   */
  thread: z.string().optional(),
  /**
   * The file the device runs for this model: the version's own (`fp32`, `sha256` above, which
   * stays the model's identity) or a variant published with the version, by the variant's
   * sha256. Its attestations name this file. Absent (older agents): the version's own file.
   */
  runs: z.object({ variant: z.enum(MODEL_VARIANTS), sha256: Sha256Schema }).optional(),
  /**
   * Why the model failed to load (state `failed`), e.g. onnxruntime's refusal of an IR version or
   * opset it does not know: the edge tells callers and the index, who cannot see the agent's log.
   */
  // Cut, not refused: a longer one (another agent's) must not make the whole status unparseable.
  error: z
    .string()
    .transform((text) => cutToLength(text, MODEL_ERROR_MAX_CHARS))
    .optional(),
})
export type ModelDescriptor = z.infer<typeof ModelDescriptorSchema>

/** Retained on `devices/{id}/status`; the broker's last will publishes `{deviceId, online:false}`. */
export const DeviceStatusSchema = z.object({
  protocol: z.literal(PROTOCOL_VERSION),
  deviceId: id,
  online: z.boolean(),
  /**
   * The device is stopping: it answers the jobs it holds and those already on their way to it,
   * then says it is offline. Not routed to meanwhile; its jobs in flight are still awaited.
   */
  draining: z.boolean().optional(),
  /** The device's signing key (compressed secp256k1, 0x hex) and its address: attestations
   * must verify against it. A device without one is never routed to. */
  publicKey: z.string().regex(/^0x0[23][0-9a-f]{64}$/).optional(),
  address: z.string().regex(/^0x[0-9a-f]{40}$/).optional(),
  /**
   * The key's signature of the device id (shared/device-key-proof.ts): proof that the device
   * holds the key. A key without it, or with one that does not verify, counts as no key.
   */
  keyProof: z.string().regex(/^0x[0-9a-fA-F]{130}$/).optional(),
  models: z.array(ModelDescriptorSchema).default([]),
  hw: z
    .object({
      arch: z.string(),
      cpus: count,
      memMB: count,
      accel: z.array(z.string()),
    })
    .optional(),
  agentVersion: z.string().optional(),
  runtime: z
    .object({
      name: z.string(),
      version: z.string(),
      /** Execution providers usable on this device, in the agent's order of preference. */
      executionProviders: z.array(z.string()),
      // Session options, for reporting only: strings rather than enums, so that a newer agent's
      // value never makes its whole status unparseable. Threads: 0 is onnxruntime's default.
      threads: z.object({ intraOp: count, interOp: count, allowSpinning: z.boolean().optional() }).optional(),
      graphOptimizationLevel: z.string().optional(),
      executionMode: z.string().optional(),
      /** Where model sessions run: 'auto', 'agent-thread', 'worker-thread' or 'child-process' (ModelDescriptor.thread says where each one runs now). */
      runIn: z.string().optional(),
      /** Resident memory one model's child process may hold, in MB (past it, the run and the process are stopped). */
      processMemoryLimitMb: z.number().int().positive().optional(),
      /** Preferred execution providers that are not usable here, and why. */
      skippedExecutionProviders: z.array(z.object({ name: z.string(), reason: z.string() })).optional(),
    })
    .optional(),
})
export type DeviceStatus = z.infer<typeof DeviceStatusSchema>

/**
 * A gateway treats a device as gone when neither its status nor a heartbeat arrived for this
 * long: devices must heartbeat well within it (the agent at most every third of it).
 */
export const DEVICE_STALE_AFTER_MS = 15_000
/**
 * The largest model file a device's `"published": "*"` picks by default (its config's
 * maxModelBytes): a larger one is served only by devices that name it or raise the limit, which
 * `depinfer models publish` tells its publisher.
 */
export const DEFAULT_MAX_MODEL_BYTES = 200_000_000

/** Published every few seconds on `devices/{id}/heartbeat`. */
export const HeartbeatSchema = z.object({
  inflight: count,
  queued: count,
  /** Exponentially weighted mean of recent job service times, in milliseconds. */
  ewmaMs: z.number().nonnegative(),
  /** Sender's clock, Unix epoch milliseconds. */
  ts: z.number(),
})
export type Heartbeat = z.infer<typeof HeartbeatSchema>

/** Header of a job frame on `devices/{id}/jobs`; the input tensors follow in the frame. */
export const JobHeaderSchema = z.object({
  protocol: z.literal(PROTOCOL_VERSION),
  /** bytes32 as 0x hex: the job id the attestation is signed over. */
  jobId: z.string().regex(/^0x[0-9a-f]{64}$/, 'must be a bytes32 0x hex job id'),
  /** Where the device publishes the result (MQTT 3.1.1 has no response-topic property). */
  replyTo: z.string().min(1),
  model: z.object({ name: id, version: z.string(), sha256: Sha256Schema }),
  /** Output names the caller wants; empty means all of the model's outputs. */
  outputs: z.array(z.string()).default([]),
  /** Time the device may spend on this job from receipt, in milliseconds. */
  deadlineMs: z.number().int().positive(),
  /** 1 for the first try, 2 for the retry on another device. */
  attempt: z.number().int().positive(),
  /**
   * Who asked, as an opaque id: a device batches a downloaded model's jobs (published or from a
   * URL: possibly a hostile model) only with jobs of the same group, so no model can mix one
   * caller's input into another's answer. Bundled and local files batch across callers.
   */
  batchGroup: z.string().min(1).max(64).optional(),
  /** What the device signs over besides the work itself (EIP-712 domain, price, input salt). */
  attest: z.object({
    chainId: z.string().regex(/^\d{1,20}$/),
    verifyingContract: z.string().regex(ADDRESS_PATTERN),
    /** bytes32, fresh per job: the input commitment is sha256(salt ‖ canonical inputs). */
    salt: z.string().regex(/^0x[0-9a-f]{64}$/),
    priceWei: z.string().regex(/^\d{1,78}$/),
  }),
})
export type JobHeader = z.infer<typeof JobHeaderSchema>

/**
 * Why a device could not run a job. `invalid_input` is the caller's fault (not retried);
 * `model_failed`: the model's own process failed on the job here (over the memory this device
 * gives a model, or it crashed), which is neither the device's fault nor proof against the input
 * (another device may give more memory): the edge tries another device without blaming this one.
 * The others are the device's and make the edge try another device.
 */
export const JobErrorCodeSchema = z.enum([
  'invalid_input',
  'model_failed',
  'model_unavailable',
  'deadline_exceeded',
  'overloaded',
  'internal',
])
export type JobErrorCode = z.infer<typeof JobErrorCodeSchema>

export const JobTimingsSchema = z.object({
  queueMs: z.number().nonnegative(),
  inferMs: z.number().nonnegative(),
  totalMs: z.number().nonnegative(),
  /** Jobs that shared the model run with this one (dynamic batching); 1 when it ran alone. */
  batchJobs: z.number().int().positive().default(1),
})
export type JobTimings = z.infer<typeof JobTimingsSchema>

/**
 * Header of a result frame on `gateways/{gateway}/results/{device}` (its `deviceId` must be the
 * topic's); output tensors follow on success.
 */
export const ResultHeaderSchema = z.object({
  protocol: z.literal(PROTOCOL_VERSION),
  jobId: z.string(),
  deviceId: id,
  attempt: z.number().int().positive(),
  error: z
    .object({ code: JobErrorCodeSchema, message: z.string(), field: z.string().optional() })
    .optional(),
  timings: JobTimingsSchema,
  /** The device's signed attestation of a successful job (absent on errors). */
  attestation: z.lazy(() => AttestationSchema).optional(),
})
export type ResultHeader = z.infer<typeof ResultHeaderSchema>

const hexBytes = (bytes: number) =>
  z.string().regex(new RegExp(`^0x[0-9a-fA-F]{${2 * bytes}}$`), `must be 0x and ${bytes} bytes of hex`)
/** A decimal string (no sign, no leading zeros) of an unsigned integer below 2^bits. */
const decimalUint = (bits: number) =>
  z
    .string()
    .regex(/^(0|[1-9][0-9]*)$/, 'must be a decimal integer string')
    .refine(
      // zod runs every check even after the regex fails: test it again before BigInt().
      (value) => !/^(0|[1-9][0-9]*)$/.test(value) || (value.length <= 78 && BigInt(value) < 2n ** BigInt(bits)),
      `must be below 2^${bits}`,
    )

/** Levels of a batch signature's proof: batches of up to 2^16 attestations (an ORT batch is far smaller). */
export const MAX_BATCH_PROOF_LEVELS = 16

/**
 * A signed job attestation in JSON (see attestation.ts): bytes32 fields and the device address
 * as 0x hex, the price (wei, uint256) as a decimal string, completedAt (Unix ms, uint64) as a
 * decimal string or a safe integer, and the signature: 65 bytes r ‖ s ‖ v, followed for an
 * attestation signed in a batch by its Merkle proof, 32 bytes per level (attestation.ts,
 * `signAttestations`; at most MAX_BATCH_PROOF_LEVELS levels).
 */
export const AttestationSchema = z.object({
  jobId: hexBytes(32),
  modelHash: hexBytes(32),
  inputHash: hexBytes(32),
  outputHash: hexBytes(32),
  device: hexBytes(20),
  price: decimalUint(256),
  completedAt: z.union([decimalUint(64), z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER)]),
  signature: z
    .string()
    .regex(
      new RegExp(`^0x[0-9a-fA-F]{130}([0-9a-fA-F]{64}){0,${MAX_BATCH_PROOF_LEVELS}}$`),
      `must be 65 bytes of 0x-prefixed hex, then at most ${MAX_BATCH_PROOF_LEVELS} 32-byte proof elements`,
    ),
})
export type AttestationWire = z.infer<typeof AttestationSchema>
