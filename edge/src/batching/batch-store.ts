/**
 * The batcher's D1 state: which attestations are pending, which batch each belongs to, and each
 * batch's progress towards the chain (pending → sent → confirmed). Written before every chain
 * interaction, so a crash or an RPC failure at any point resumes with the same batch.
 */
import type { AttestationRow, BatchRow } from '../attestations/rows.js'

/**
 * The lease of everything that sends transactions from the submitter account (batches and
 * settlements): one sender at a time, so two invocations never race for the same nonce.
 */
const LEASE_NAME = 'batcher'

/**
 * Takes the batcher lease unless another invocation holds an unexpired one (cron invocations
 * can overlap when a tick runs long). Returns whether this holder has it.
 */
export async function acquireLease(db: D1Database, holder: string, now: number, ttlMs: number): Promise<boolean> {
  const result = await db
    .prepare(
      `INSERT INTO leases (name, holder, expires_at) VALUES (?1, ?2, ?3)
       ON CONFLICT (name) DO UPDATE SET holder = ?2, expires_at = ?3 WHERE leases.expires_at <= ?4`,
    )
    .bind(LEASE_NAME, holder, now + ttlMs, now)
    .run()
  return result.meta.changes === 1
}

export async function releaseLease(db: D1Database, holder: string): Promise<void> {
  await db.prepare('DELETE FROM leases WHERE name = ? AND holder = ?').bind(LEASE_NAME, holder).run()
}

/** The oldest batch not yet confirmed on-chain: it must be settled before a new one is cut. */
export function oldestUnconfirmedBatch(db: D1Database): Promise<BatchRow | null> {
  return db.prepare("SELECT * FROM batches WHERE status != 'confirmed' ORDER BY from_seq LIMIT 1").first<BatchRow>()
}

/**
 * Up to `limit` attestations not yet in a batch, in sequence order, cut at the first gap in
 * `seq` so a batch always covers the contiguous range `submitBatch(fromSeq, toSeq)` declares.
 */
export async function pendingAttestations(db: D1Database, limit: number): Promise<AttestationRow[]> {
  const { results } = await db
    .prepare('SELECT * FROM attestations WHERE batch_root IS NULL ORDER BY seq LIMIT ?')
    .bind(limit)
    .all<AttestationRow>()
  const end = results.findIndex((row, i) => i > 0 && row.seq !== results[i - 1]!.seq + 1)
  return end === -1 ? results : results.slice(0, end)
}

/** The attestations of a batch, in sequence order (the order the tree was built from). */
export async function attestationsOfBatch(db: D1Database, root: string): Promise<AttestationRow[]> {
  const { results } = await db
    .prepare('SELECT * FROM attestations WHERE batch_root = ? ORDER BY seq')
    .bind(root)
    .all<AttestationRow>()
  return results
}

/**
 * Records the batch and assigns its attestations to it, in one transaction. Only the lease
 * holder cuts batches, so the rows are still unassigned; the check is for a broken invariant.
 */
export async function recordBatch(db: D1Database, root: string, fromSeq: number, toSeq: number, now: number): Promise<void> {
  const count = toSeq - fromSeq + 1
  const [, assigned] = await db.batch([
    db
      .prepare("INSERT INTO batches (root, from_seq, to_seq, count, status, recorded_at) VALUES (?, ?, ?, ?, 'pending', ?)")
      .bind(root, fromSeq, toSeq, count, now),
    db
      .prepare('UPDATE attestations SET batch_root = ? WHERE seq BETWEEN ? AND ? AND batch_root IS NULL')
      .bind(root, fromSeq, toSeq),
  ])
  if (assigned?.meta.changes !== count) {
    throw new Error(`batch ${root} took ${assigned?.meta.changes} of ${count} attestations ${fromSeq}..${toSeq}`)
  }
}

export async function markSent(db: D1Database, root: string, txHash: string): Promise<void> {
  await db
    .prepare("UPDATE batches SET status = 'sent', tx_hash = ?, attempts = attempts + 1, last_error = NULL WHERE root = ?")
    .bind(txHash, root)
    .run()
}

export async function markConfirmed(db: D1Database, root: string, txHash: string, blockNumber: number, now: number): Promise<void> {
  await db
    .prepare("UPDATE batches SET status = 'confirmed', tx_hash = ?, block_number = ?, confirmed_at = ?, last_error = NULL WHERE root = ?")
    .bind(txHash, blockNumber, now, root)
    .run()
}

/** The attempt failed before anything is known to be on-chain: back to pending, to be re-sent. */
export async function markFailed(db: D1Database, root: string, error: string, keepTx: boolean): Promise<void> {
  await db
    .prepare(
      keepTx
        ? 'UPDATE batches SET last_error = ? WHERE root = ?'
        : "UPDATE batches SET status = 'pending', tx_hash = NULL, last_error = ? WHERE root = ?",
    )
    .bind(error.slice(0, 500), root)
    .run()
}
