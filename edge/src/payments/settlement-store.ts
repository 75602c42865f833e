/**
 * The settler's D1 state (edge/migrations/0004_payments.sql): one settlement per confirmed
 * attestation batch, in batch order, recorded with its exact debits and payout root before its
 * transaction is sent, and the accounts' cumulative earnings behind the on-chain payout root.
 */
import type { Hex } from '@depinfer/shared'
import type { BatchRow } from '../attestations/rows.js'

export type SettlementStatus = 'skipped' | 'pending' | 'sent' | 'confirmed'

export interface SettlementRow {
  attestation_root: string
  from_seq: number
  to_seq: number
  status: SettlementStatus
  jobs: number
  payers_json: string
  amounts_json: string
  total_wei: string
  payout_root: string | null
  payout_total: string
  tx_hash: string | null
  block_number: number | null
  attempts: number
  last_error: string | null
  recorded_at: number
  confirmed_at: number | null
}

/** A settlement still to be brought on-chain, with the block its attestation batch was posted in. */
export type OpenSettlement = SettlementRow & { batch_block: number | null }

export function oldestOpenSettlement(db: D1Database): Promise<OpenSettlement | null> {
  return db
    .prepare(
      `SELECT s.*, b.block_number AS batch_block FROM settlements s JOIN batches b ON b.root = s.attestation_root
       WHERE s.status IN ('pending', 'sent') ORDER BY s.from_seq LIMIT 1`,
    )
    .first<OpenSettlement>()
}

/**
 * The oldest confirmed batch without a settlement, unless an older batch is still unconfirmed:
 * settlements follow batch order, so every payout root covers a prefix of the batches.
 */
export function nextBatchToSettle(db: D1Database): Promise<BatchRow | null> {
  return db
    .prepare(
      `SELECT b.* FROM batches b
       WHERE b.status = 'confirmed'
         AND NOT EXISTS (SELECT 1 FROM settlements s WHERE s.attestation_root = b.root)
         AND NOT EXISTS (SELECT 1 FROM batches u WHERE u.status != 'confirmed' AND u.from_seq < b.from_seq)
       ORDER BY b.from_seq LIMIT 1`,
    )
    .first<BatchRow>()
}

/** A charged job of a batch, with what its attestation says (the device and the price it signed). */
export interface ChargedJob {
  id: string
  payer: string
  price_wei: string
  developer_wei: string
  developer_address: string | null
  provider_fee_wei: string
  protocol_fee_wei: string
  protocol_address: string | null
  job_id: string
  seq: number
  device: string
  attested_price_wei: string
}

export async function chargedJobsOfBatch(db: D1Database, root: string): Promise<ChargedJob[]> {
  const { results } = await db
    .prepare(
      `SELECT r.id, r.payer, r.price_wei, r.developer_wei, r.developer_address, r.provider_fee_wei, r.protocol_fee_wei,
              r.protocol_address, r.job_id, r.seq, a.device, a.price_wei AS attested_price_wei
       FROM attestations a JOIN reservations r ON r.seq = a.seq
       WHERE a.batch_root = ? AND r.status = 'charged' ORDER BY a.seq`,
    )
    .bind(root)
    .all<ChargedJob>()
  return results
}

/** `Escrow.totalDebited` after the latest recorded settlement (0 before the first). */
export async function lastPayoutTotal(db: D1Database): Promise<bigint> {
  const row = await db.prepare('SELECT payout_total FROM settlements ORDER BY from_seq DESC LIMIT 1').first<{ payout_total: string }>()
  return BigInt(row?.payout_total ?? '0')
}

/** Every account's cumulative earnings as of the latest confirmed settlement. */
export async function payoutAccounts(db: D1Database): Promise<Map<string, bigint>> {
  const { results } = await db.prepare('SELECT account, cumulative_wei FROM payout_accounts').all<{ account: string; cumulative_wei: string }>()
  return new Map(results.map((r) => [r.account, BigInt(r.cumulative_wei)]))
}

/** A charged job its payer's Escrow balance no longer covers, and that balance (settler.ts fundedJobs). */
export interface UnfundedJob {
  job: ChargedJob
  balance: bigint
}

/**
 * Moves unfunded jobs out of `reservations` into `unfunded_jobs` (0013_unfunded_jobs.sql): their
 * payers are not debited for them, nor their earners paid. Statements for a D1 batch.
 */
function leaveOutStatements(db: D1Database, root: string, unfunded: readonly UnfundedJob[], now: number): D1PreparedStatement[] {
  if (unfunded.length === 0) return []
  const rows = JSON.stringify(unfunded.map(({ job, balance }) => [job.id, job.payer.toLowerCase(), job.price_wei, job.job_id, job.seq, balance.toString()]))
  return [
    db
      .prepare(
        `INSERT INTO unfunded_jobs (reservation_id, payer, price_wei, job_id, seq, batch_root, balance_wei, recorded_at)
         SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), json_extract(value, '$[3]'),
                json_extract(value, '$[4]'), ?1, json_extract(value, '$[5]'), ?2 FROM json_each(?3)`,
      )
      .bind(root, now, rows),
    db
      .prepare("DELETE FROM reservations WHERE status = 'charged' AND settlement_root IS NULL AND id IN (SELECT json_extract(value, '$[0]') FROM json_each(?))")
      .bind(rows),
  ]
}

/**
 * A batch with no job to debit (all free, or none its payers' balances cover): nothing to send,
 * but its place in the order is taken.
 */
export async function recordSkipped(db: D1Database, batch: BatchRow, payoutTotal: bigint, now: number, unfunded: readonly UnfundedJob[] = []): Promise<void> {
  await db.batch([
    ...leaveOutStatements(db, batch.root, unfunded, now),
    db
      .prepare(
        `INSERT INTO settlements (attestation_root, from_seq, to_seq, status, jobs, payers_json, amounts_json, total_wei,
           payout_total, recorded_at) VALUES (?, ?, ?, 'skipped', 0, '[]', '[]', '0', ?, ?)`,
      )
      .bind(batch.root, batch.from_seq, batch.to_seq, payoutTotal.toString(), now),
  ])
}

export interface NewSettlement {
  batch: BatchRow
  jobs: number
  payers: Hex[]
  amounts: bigint[]
  total: bigint
  payoutRoot: Hex
  payoutTotal: bigint
  /** The new cumulative earnings of each account that earned in this batch. */
  earnings: Map<string, bigint>
  /** The batch's charged jobs left out: their payers' balances no longer cover them. */
  unfunded: readonly UnfundedJob[]
}

/**
 * Records the settlement, its accounts' new cumulative earnings, and assigns the batch's charged
 * jobs to it, in one transaction. Only the lease holder records, so the jobs are unassigned; the
 * check is for a broken invariant.
 */
export async function recordSettlement(db: D1Database, s: NewSettlement, now: number): Promise<void> {
  const earnings = JSON.stringify([...s.earnings].map(([account, cumulative]) => [account, cumulative.toString()]))
  const leaveOut = leaveOutStatements(db, s.batch.root, s.unfunded, now)
  const results = await db.batch([
    ...leaveOut,
    db
      .prepare(
        `INSERT INTO settlements (attestation_root, from_seq, to_seq, status, jobs, payers_json, amounts_json, total_wei,
           payout_root, payout_total, recorded_at) VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?)`,
      )
      .bind(
        s.batch.root, s.batch.from_seq, s.batch.to_seq, s.jobs, JSON.stringify(s.payers), JSON.stringify(s.amounts.map(String)),
        s.total.toString(), s.payoutRoot, s.payoutTotal.toString(), now,
      ),
    // One statement for all accounts (json_each), however many earned in the batch.
    db
      .prepare(
        `INSERT INTO settlement_earnings (attestation_root, account, cumulative_wei)
         SELECT ?, json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?)`,
      )
      .bind(s.batch.root, earnings),
    db
      .prepare(
        `UPDATE reservations SET settlement_root = ? WHERE status = 'charged' AND settlement_root IS NULL
           AND seq IN (SELECT seq FROM attestations WHERE batch_root = ?)`,
      )
      .bind(s.batch.root, s.batch.root),
  ])
  const assigned = results[leaveOut.length + 2]
  if (assigned?.meta.changes !== s.jobs) {
    throw new Error(`settlement of ${s.batch.root} took ${assigned?.meta.changes} of its ${s.jobs} charged jobs`)
  }
}

/**
 * Forgets a recorded settlement that was never sent (settler.ts: a payer's balance fell below
 * it), so that its batch is settled again from the balances as they are: its earnings and its
 * hold on the batch's jobs go with it. Jobs already left out stay left out.
 */
export async function discardSettlement(db: D1Database, root: string): Promise<void> {
  await db.batch([
    db.prepare('DELETE FROM settlement_earnings WHERE attestation_root = ?').bind(root),
    db.prepare("UPDATE reservations SET settlement_root = NULL WHERE settlement_root = ? AND status = 'charged'").bind(root),
    db.prepare("DELETE FROM settlements WHERE attestation_root = ? AND status = 'pending' AND tx_hash IS NULL").bind(root),
  ])
}

export async function markSettlementSent(db: D1Database, root: string, txHash: string): Promise<void> {
  await db
    .prepare("UPDATE settlements SET status = 'sent', tx_hash = ?, attempts = attempts + 1, last_error = NULL WHERE attestation_root = ?")
    .bind(txHash, root)
    .run()
}

/**
 * The settlement is on-chain: its earnings become the served payout tree and its jobs stop
 * holding their payers' balances (the chain balance now has them), in one transaction.
 */
export async function markSettlementConfirmed(db: D1Database, root: string, txHash: string, blockNumber: number, now: number): Promise<void> {
  await db.batch([
    db
      .prepare(
        "UPDATE settlements SET status = 'confirmed', tx_hash = ?, block_number = ?, confirmed_at = ?, last_error = NULL WHERE attestation_root = ?",
      )
      .bind(txHash, blockNumber, now, root),
    db
      .prepare(
        `INSERT INTO payout_accounts (account, cumulative_wei, updated_root)
         SELECT account, cumulative_wei, attestation_root FROM settlement_earnings WHERE attestation_root = ?
         ON CONFLICT (account) DO UPDATE SET cumulative_wei = excluded.cumulative_wei, updated_root = excluded.updated_root`,
      )
      .bind(root),
    db
      .prepare("UPDATE reservations SET status = 'settled', settled_at = ? WHERE settlement_root = ? AND status = 'charged'")
      .bind(now, root),
  ])
}

/** The attempt failed before anything is known to be on-chain (`keepTx`: it may still be mined). */
export async function markSettlementFailed(db: D1Database, root: string, error: string, keepTx: boolean): Promise<void> {
  await db
    .prepare(
      keepTx
        ? 'UPDATE settlements SET last_error = ? WHERE attestation_root = ?'
        : "UPDATE settlements SET status = 'pending', tx_hash = NULL, last_error = ? WHERE attestation_root = ?",
    )
    .bind(error.slice(0, 500), root)
    .run()
}

/** The latest confirmed payout root and, read in the same transaction, the accounts under it. */
export async function confirmedPayoutState(
  db: D1Database,
  withAccounts: boolean,
): Promise<{ settlement: SettlementRow | null; accounts: { account: string; cumulative_wei: string }[] | undefined }> {
  const latest = db.prepare("SELECT * FROM settlements WHERE status = 'confirmed' ORDER BY from_seq DESC LIMIT 1")
  if (!withAccounts) return { settlement: await latest.first<SettlementRow>(), accounts: undefined }
  const [settlement, accounts] = await db.batch<SettlementRow | { account: string; cumulative_wei: string }>([
    latest,
    db.prepare('SELECT account, cumulative_wei FROM payout_accounts'),
  ])
  return {
    settlement: (settlement?.results[0] as SettlementRow | undefined) ?? null,
    accounts: accounts?.results as { account: string; cumulative_wei: string }[],
  }
}
