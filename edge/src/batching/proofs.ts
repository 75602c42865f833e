/**
 * What the proofs API serves: a job's attestation with everything needed to check it
 * independently (the EIP-712 domain it was signed under, its on-chain leaf) and, once it is in a
 * batch, the batch and the Merkle proof of the leaf under the batch's root.
 */
import {
  ATTESTATION_DOMAIN_NAME,
  ATTESTATION_DOMAIN_VERSION,
  attestationLeaf,
  buildMerkleTree,
  type Hex,
  type MerkleTree,
} from '@depinfer/shared'
import { attestationOfRow, type AttestationRow, type BatchRow, type BatchStatus } from '../attestations/rows.js'
import type { Env } from '../env.js'
import { archivedJob } from './archive.js'
import { attestationsOfBatch } from './batch-store.js'
import { batchLeaves } from './batcher.js'

export interface BatchView {
  root: string
  status: BatchStatus
  fromSeq: number
  toSeq: number
  count: number
  txHash: string | null
  blockNumber: number | null
  recordedAt: number
  confirmedAt: number | null
  /** When its attestations moved from D1 to R2 (still served with their proofs); null before. */
  archivedAt: number | null
  attempts: number
  lastError: string | null
}

export interface JobAttestationView {
  jobId: string
  seq: number
  deviceId: string
  acceptedAt: number
  attestation: {
    jobId: string
    modelHash: string
    inputHash: string
    outputHash: string
    device: string
    price: string
    completedAt: string
  }
  signature: string
  /** The EIP-712 domain the device signed under. */
  domain: { name: string; version: string; chainId: string; verifyingContract: string }
  /** `AttestationRegistry.attestationLeaf(...attestation, seq)`. */
  leaf: Hex
  /** The batch the attestation is in (null while pending); on-chain once `status` is confirmed. */
  batch: BatchView | null
  /** Siblings from the leaf up to the batch root (null while pending). */
  proof: Hex[] | null
}

function batchView(row: BatchRow): BatchView {
  return {
    root: row.root,
    status: row.status,
    fromSeq: row.from_seq,
    toSeq: row.to_seq,
    count: row.count,
    txHash: row.tx_hash,
    blockNumber: row.block_number,
    recordedAt: row.recorded_at,
    confirmedAt: row.confirmed_at,
    archivedAt: row.archived_at,
    attempts: row.attempts,
    lastError: row.last_error,
  }
}

/** Trees of recently asked-about batches: proving many jobs of one batch builds it once. */
const treeCache = new Map<string, MerkleTree>()
const TREE_CACHE_SIZE = 4

/** The tree of batch `root`, built from `rows` (its attestations in seq order) unless cached. */
async function treeOf(root: string, rows: () => Promise<AttestationRow[]>): Promise<MerkleTree> {
  let tree = treeCache.get(root)
  if (!tree) {
    tree = buildMerkleTree(batchLeaves(await rows()))
    if (tree.root !== root) throw new Error(`batch ${root}: its attestations hash to ${tree.root}`)
    if (treeCache.size >= TREE_CACHE_SIZE) treeCache.delete(treeCache.keys().next().value!)
    treeCache.set(root, tree)
  }
  return tree
}

/**
 * The job's attestation view, or undefined for an unknown job: from D1, or for a job of an
 * archived batch (batching/archive.ts), from the batch's archive in R2.
 */
export async function jobAttestation(env: Pick<Env, 'DB' | 'MODELS'>, jobId: string): Promise<JobAttestationView | undefined> {
  const id = jobId.toLowerCase()
  const row = await env.DB.prepare('SELECT * FROM attestations WHERE job_id = ?').bind(id).first<AttestationRow>()
  if (row) {
    const batchRow = row.batch_root ? await env.DB.prepare('SELECT * FROM batches WHERE root = ?').bind(row.batch_root).first<BatchRow>() : null
    if (!batchRow) return viewOf(row, null, null)
    const tree = await treeOf(batchRow.root, () => attestationsOfBatch(env.DB, batchRow.root))
    return viewOf(row, batchRow, tree.proof(row.seq - batchRow.from_seq))
  }
  const archived = await archivedJob(env, id)
  if (!archived) return undefined
  const tree = await treeOf(archived.batch.root, async () => archived.archive.attestations)
  return viewOf(archived.row, archived.batch, tree.proof(archived.row.seq - archived.batch.from_seq))
}

function viewOf(row: AttestationRow, batchRow: BatchRow | null, proof: Hex[] | null): JobAttestationView {
  const attestation = attestationOfRow(row)
  const leaf = attestationLeaf(attestation, BigInt(row.seq))
  return {
    jobId: row.job_id,
    seq: row.seq,
    deviceId: row.device_id,
    acceptedAt: row.accepted_at,
    attestation: {
      jobId: row.job_id,
      modelHash: row.model_hash,
      inputHash: row.input_hash,
      outputHash: row.output_hash,
      device: row.device,
      price: row.price_wei,
      completedAt: row.completed_at,
    },
    signature: row.signature,
    domain: {
      name: ATTESTATION_DOMAIN_NAME,
      version: ATTESTATION_DOMAIN_VERSION,
      chainId: row.chain_id,
      verifyingContract: row.verifying_contract,
    },
    leaf,
    batch: batchRow && batchView(batchRow),
    proof,
  }
}

/** How a batch's priced jobs were settled on the Escrow (payments/settler.ts). */
export interface SettlementView {
  /** `skipped`: no job to debit; `pending` / `sent`: not on-chain yet (see lastError); `confirmed`. */
  status: 'skipped' | 'pending' | 'sent' | 'confirmed'
  /** Jobs debited, and the wei. */
  jobs: number
  totalWei: string
  /** Charged jobs left out because their payer's Escrow balance no longer covered them. */
  unfundedJobs: number
  txHash: string | null
  attempts: number
  lastError: string | null
}

type ListedBatchRow = BatchRow & {
  s_status: SettlementView['status'] | null
  s_jobs: number
  s_total_wei: string
  s_unfunded: number
  s_tx_hash: string | null
  s_attempts: number
  s_last_error: string | null
}

/**
 * Batches, newest first, each with its settlement (null before it is recorded, or with payments
 * off); `beforeSeq` pages backwards (pass the last page's smallest fromSeq).
 */
export async function listBatches(db: D1Database, limit: number, beforeSeq: number | undefined): Promise<(BatchView & { settlement: SettlementView | null })[]> {
  const { results } = await db
    .prepare(
      `SELECT b.*, s.status AS s_status, s.jobs AS s_jobs, s.total_wei AS s_total_wei, s.tx_hash AS s_tx_hash,
              s.attempts AS s_attempts, s.last_error AS s_last_error,
              (SELECT COUNT(*) FROM unfunded_jobs u WHERE u.batch_root = b.root) AS s_unfunded
       FROM batches b LEFT JOIN settlements s ON s.attestation_root = b.root
       WHERE b.from_seq < ? ORDER BY b.from_seq DESC LIMIT ?`,
    )
    .bind(beforeSeq ?? Number.MAX_SAFE_INTEGER, limit)
    .all<ListedBatchRow>()
  return results.map((row) => ({
    ...batchView(row),
    settlement: row.s_status === null
      ? null
      : {
          status: row.s_status,
          jobs: row.s_jobs,
          totalWei: row.s_total_wei,
          unfundedJobs: row.s_unfunded,
          txHash: row.s_tx_hash,
          attempts: row.s_attempts,
          lastError: row.s_last_error,
        },
  }))
}

/** Counts by state, for a quick look at the batcher's backlog; `total` includes archived jobs. */
export async function attestationCounts(db: D1Database): Promise<{ total: number; pending: number }> {
  const row = await db
    .prepare(
      `SELECT (SELECT COUNT(*) FROM attestations) + (SELECT COALESCE(SUM(count), 0) FROM batches WHERE archived_at IS NOT NULL) AS total,
              (SELECT COUNT(*) FROM attestations WHERE batch_root IS NULL) AS pending`,
    )
    .first<{ total: number; pending: number }>()
  return { total: row?.total ?? 0, pending: row?.pending ?? 0 }
}
