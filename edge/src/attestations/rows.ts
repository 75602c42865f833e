/**
 * How attestations and batches are stored in D1 (edge/migrations/0002_attestations.sql) and
 * converted back to the protocol's types. The one place that knows the column names.
 */
import type { Attestation, AttestationDomain, Hex } from '@depinfer/shared'

export interface AttestationRow {
  seq: number
  job_id: string
  model_hash: string
  input_hash: string
  output_hash: string
  device: string
  price_wei: string
  completed_at: string
  signature: string
  chain_id: string
  verifying_contract: string
  device_id: string
  batch_root: string | null
  accepted_at: number
}

export type BatchStatus = 'pending' | 'sent' | 'confirmed'

export interface BatchRow {
  root: string
  from_seq: number
  to_seq: number
  count: number
  status: BatchStatus
  tx_hash: string | null
  block_number: number | null
  attempts: number
  last_error: string | null
  recorded_at: number
  confirmed_at: number | null
  /** When its rows moved to R2 (batching/archive.ts); null while they are in D1. */
  archived_at: number | null
  /** Once archived: the earliest and latest minting time of its job ids (gateway/job-id.ts). */
  jobs_from_ms: number | null
  jobs_to_ms: number | null
}

/** An accepted attestation, as the gateway records it. */
export interface AcceptedAttestation {
  attestation: Attestation
  signature: Hex
  domain: AttestationDomain
  deviceId: string
  /** The priced job's reservation, charged when the attestation reaches D1; absent for a free job. */
  reservationId?: string
}

/** An attestation as recorded, before a batch takes it: a row of `attestations` without `batch_root`. */
export type RecordedAttestation = Omit<AttestationRow, 'batch_root'>

export function recordedAttestation(accepted: AcceptedAttestation, seq: number, acceptedAt: number): RecordedAttestation {
  const { attestation: a, signature, domain, deviceId } = accepted
  return {
    seq,
    job_id: a.jobId,
    model_hash: a.modelHash,
    input_hash: a.inputHash,
    output_hash: a.outputHash,
    device: a.device,
    price_wei: a.price.toString(),
    completed_at: a.completedAt.toString(),
    signature,
    chain_id: domain.chainId.toString(),
    verifying_contract: domain.verifyingContract,
    device_id: deviceId,
    accepted_at: acceptedAt,
  }
}

/**
 * Stores an attestation under the `seq` the Gateway assigned it. A job already on record is left
 * as it is, so replaying a flush whose outcome was lost (the Gateway died between D1's commit
 * and its outbox delete) changes nothing; only a conflict on `job_id` is forgiven, so a `seq`
 * taken by another job still fails loudly rather than dropping an attestation.
 */
export const INSERT_ATTESTATION_SQL = `INSERT INTO attestations
  (seq, job_id, model_hash, input_hash, output_hash, device, price_wei, completed_at, signature,
   chain_id, verifying_contract, device_id, accepted_at)
  VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job_id) DO NOTHING`

export function insertAttestationParams(r: RecordedAttestation): (string | number)[] {
  return [
    r.seq, r.job_id, r.model_hash, r.input_hash, r.output_hash, r.device, r.price_wei, r.completed_at, r.signature,
    r.chain_id, r.verifying_contract, r.device_id, r.accepted_at,
  ]
}

/** The highest `seq` on record (0 before the first attestation), archived batches included. */
export async function lastRecordedSeq(db: D1Database): Promise<number> {
  const row = await db
    .prepare('SELECT MAX(seq) AS seq FROM (SELECT MAX(seq) AS seq FROM attestations UNION ALL SELECT MAX(to_seq) FROM batches)')
    .first<{ seq: number | null }>()
  return row?.seq ?? 0
}

export function attestationOfRow(row: AttestationRow): Attestation {
  return {
    jobId: row.job_id as Hex,
    modelHash: row.model_hash as Hex,
    inputHash: row.input_hash as Hex,
    outputHash: row.output_hash as Hex,
    device: row.device as Hex,
    price: BigInt(row.price_wei),
    completedAt: BigInt(row.completed_at),
  }
}
