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

export function batchView(row: BatchRow): BatchView {
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
    attempts: row.attempts,
    lastError: row.last_error,
  }
}

/** Trees of recently asked-about batches: proving many jobs of one batch builds it once. */
const treeCache = new Map<string, MerkleTree>()
const TREE_CACHE_SIZE = 4

async function treeOf(db: D1Database, root: string): Promise<MerkleTree> {
  let tree = treeCache.get(root)
  if (!tree) {
    tree = buildMerkleTree(batchLeaves(await attestationsOfBatch(db, root)))
    if (tree.root !== root) throw new Error(`batch ${root}: its attestations hash to ${tree.root}`)
    if (treeCache.size >= TREE_CACHE_SIZE) treeCache.delete(treeCache.keys().next().value!)
    treeCache.set(root, tree)
  }
  return tree
}

/** The job's attestation view, or undefined for an unknown job. */
export async function jobAttestation(db: D1Database, jobId: string): Promise<JobAttestationView | undefined> {
  const row = await db.prepare('SELECT * FROM attestations WHERE job_id = ?').bind(jobId.toLowerCase()).first<AttestationRow>()
  if (!row) return undefined
  const attestation = attestationOfRow(row)
  const leaf = attestationLeaf(attestation, BigInt(row.seq))
  let batch: BatchView | null = null
  let proof: Hex[] | null = null
  if (row.batch_root) {
    const batchRow = await db.prepare('SELECT * FROM batches WHERE root = ?').bind(row.batch_root).first<BatchRow>()
    if (batchRow) {
      batch = batchView(batchRow)
      proof = (await treeOf(db, row.batch_root)).proof(row.seq - batchRow.from_seq)
    }
  }
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
    batch,
    proof,
  }
}

/** Batches, newest first; `beforeSeq` pages backwards (pass the last page's smallest fromSeq). */
export async function listBatches(db: D1Database, limit: number, beforeSeq: number | undefined): Promise<BatchView[]> {
  const { results } = await db
    .prepare('SELECT * FROM batches WHERE from_seq < ? ORDER BY from_seq DESC LIMIT ?')
    .bind(beforeSeq ?? Number.MAX_SAFE_INTEGER, limit)
    .all<BatchRow>()
  return results.map(batchView)
}

/** Counts by state, for a quick look at the batcher's backlog. */
export async function attestationCounts(db: D1Database): Promise<{ total: number; pending: number }> {
  const row = await db
    .prepare('SELECT COUNT(*) AS total, COALESCE(SUM(batch_root IS NULL), 0) AS pending FROM attestations')
    .first<{ total: number; pending: number }>()
  return { total: row?.total ?? 0, pending: row?.pending ?? 0 }
}
