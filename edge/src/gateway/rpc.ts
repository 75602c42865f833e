/**
 * What crosses the Worker → Gateway Durable Object RPC boundary. Only plain structured-clonable
 * values: class instances (errors included) do not survive it, so failures travel as problems.
 */
import type { AttestationWire, Hex, JobTimings, PublishedVariant, RawTensor, TensorSpec } from '@depinfer/shared'
import type { ProblemDetails } from '../errors/base.js'
import type { ModelState, PublishedFile } from './catalog.js'

export type Outcome<T> = { ok: true; value: T } | { ok: false; problem: ProblemDetails }

export interface InferJob {
  model: string
  version: string | undefined
  inputs: RawTensor[]
  /** Fresh 32-byte salt of the input commitment, and `inputCommitment(salt, inputs)`. */
  salt: Uint8Array
  inputHash: Hex
  /** Output names requested; empty for all. */
  outputs: string[]
  /** Budget for the whole job including one retry, in milliseconds. */
  deadlineMs: number
  /** The job's price, reserved by the Worker: the device signs it, the attestation carries it. */
  priceWei: bigint
  /** The payer's reservation of `priceWei`, charged when the attestation is recorded (priced jobs). */
  reservationId?: string
  /** Who asked, opaque (JobHeader.batchGroup): devices batch downloaded models per group. */
  batchGroup: string
  /** The caller's account (AuthVariables.apiKeyAccount): its jobs' share of MAX_INFLIGHT_BYTES. */
  account: string
  /**
   * The model file the job must run (a published version's sha256): the price was computed for
   * it, so a device advertising another file under that name and version never gets the job.
   */
  sha256?: string
  /**
   * The variants published for this model name that devices may run instead of a version's own
   * file (their reports meet their publishers' thresholds); absent: none. A device advertising
   * any other file under the name and version never gets the job (see served-file.ts).
   */
  variants?: AcceptedVariant[]
  /**
   * The name's published versions and their files; absent or empty when nobody published the
   * name. When present, only those versions, running those files, are served (resolveModel).
   */
  published?: PublishedFile[]
}

/** A variant of a published version that devices may run, by the sha256 of its file. */
export interface AcceptedVariant {
  version: string
  kind: PublishedVariant['kind']
  sha256: string
}

export interface InferResult {
  jobId: string
  deviceId: string
  modelName: string
  modelVersion: string
  outputs: RawTensor[]
  attempts: number
  timings: JobTimings & { gatewayMs: number }
  /** The verified, recorded attestation, its sequence number and the input commitment's salt. */
  attestation: AttestationWire & { seq: number; salt: string }
}

export interface ModelInfo {
  name: string
  version: string
  versions: string[]
  sha256: string
  platform: string
  inputs: TensorSpec[]
  outputs: TensorSpec[]
  maxBatch: number
  state: ModelState
  readyDevices: number
}

export interface RepositoryEntry {
  name: string
  version: string
  /** One file devices serve under the name and version (an entry per file). */
  sha256: string
  /** Whether it is the first file seen under them: what the version is unless the name is published. */
  defining: boolean
  state: ModelState
  reason: string
}

export interface GatewayHealth {
  brokerConnected: boolean
  devicesOnline: number
}
