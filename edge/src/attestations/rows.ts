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
}

/** An accepted attestation, as the gateway records it. */
export interface AcceptedAttestation {
  attestation: Attestation
  signature: Hex
  domain: AttestationDomain
  deviceId: string
  /** The priced job's reservation, charged in the same transaction; absent for a free job. */
  reservationId?: string
}

export const INSERT_ATTESTATION_SQL = `INSERT INTO attestations
  (job_id, model_hash, input_hash, output_hash, device, price_wei, completed_at, signature,
   chain_id, verifying_contract, device_id, accepted_at)
  VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq`

/**
 * The INSERT of a priced job's attestation: it only happens while the job's reservation is still
 * held, so every priced attestation on record has exactly one charge (see payments/reservations).
 * Params: those of INSERT_ATTESTATION_SQL, then the reservation id.
 */
export const INSERT_PRICED_ATTESTATION_SQL = `INSERT INTO attestations
  (job_id, model_hash, input_hash, output_hash, device, price_wei, completed_at, signature,
   chain_id, verifying_contract, device_id, accepted_at)
  SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?
  WHERE EXISTS (SELECT 1 FROM reservations WHERE id = ? AND status = 'reserved') RETURNING seq`

export function insertAttestationParams(accepted: AcceptedAttestation, acceptedAt: number): (string | number)[] {
  const { attestation: a, signature, domain, deviceId } = accepted
  return [
    a.jobId, a.modelHash, a.inputHash, a.outputHash, a.device, a.price.toString(), a.completedAt.toString(), signature,
    domain.chainId.toString(), domain.verifyingContract, deviceId, acceptedAt,
  ]
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

export function domainOfRow(row: AttestationRow): AttestationDomain {
  return { chainId: BigInt(row.chain_id), verifyingContract: row.verifying_contract as Hex }
}
