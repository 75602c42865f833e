/**
 * Reservations of priced jobs in D1 (edge/migrations/0004_payments.sql), the off-chain half of
 * the escrow: a job's price is held against its payer's on-chain `availableBalance` before the
 * job is sent, becomes `charged` in the D1 transaction that stores its attestation (shortly after
 * the answer, when the Gateway flushes its outbox; until then it keeps holding as `reserved`), and
 * `settled` once its batch's settlement is confirmed on-chain (the chain balance then reflects
 * it). A failed job's reservation is deleted; one abandoned by a crashed Worker expires.
 *
 * The hold check is one conditional INSERT, so concurrent requests of one payer (in any isolate)
 * can never together hold more than its balance: D1 runs statements one at a time.
 */
import type { Hex } from '@depinfer/shared'
import type { BalanceRead } from './balances.js'
import type { JobPrice } from './price.js'
import { joinWei, MAX_RESERVABLE_WEI, splitWei } from './wei.js'

/**
 * A settled job keeps counting against a balance read at a block before its settlement's (the
 * value does not reflect the debit yet, e.g. a node a block behind); against a read at or after
 * it, not (it did: counting it again refused a payer's jobs for ~30 s after every top-up). Only
 * jobs settled this recently are looked at, so a payer's old settled rows are never scanned.
 */
const SETTLED_MARGIN_MS = 30_000

export interface NewReservation {
  id: string
  payer: Hex
  price: JobPrice
  modelName: string
  modelVersion: string
  apiKeyLabel: string
  createdAt: number
  /** After this, a reservation still `reserved` was abandoned (its job cannot still answer). */
  expiresAt: number
}

// D1 may bind a JS number as a REAL: every number is CAST, so the arithmetic stays integral.
const RESERVE_SQL = `INSERT INTO reservations
  (id, payer, status, price_wei, price_gwei, price_rem, developer_wei, developer_address, provider_fee_wei,
   protocol_fee_wei, protocol_address, model_name, model_version, api_key_label, created_at, expires_at)
  SELECT ?1, ?2, 'reserved', ?3, CAST(?4 AS INTEGER), CAST(?5 AS INTEGER), ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13,
         CAST(?14 AS INTEGER), CAST(?15 AS INTEGER)
  FROM (SELECT COALESCE(SUM(price_gwei), 0) + CAST(?4 AS INTEGER)
                 + (COALESCE(SUM(price_rem), 0) + CAST(?5 AS INTEGER)) / 1000000000 AS gwei,
               (COALESCE(SUM(price_rem), 0) + CAST(?5 AS INTEGER)) % 1000000000 AS rem
        FROM reservations
        WHERE payer = ?2
          AND (status IN ('reserved', 'charged')
               OR (status = 'settled' AND settled_at > CAST(?16 AS INTEGER)
                   AND COALESCE((SELECT s.block_number FROM settlements s WHERE s.attestation_root = reservations.settlement_root), ?19 + 1) > CAST(?19 AS INTEGER)))) AS held
  WHERE held.gwei < CAST(?17 AS INTEGER) OR (held.gwei = CAST(?17 AS INTEGER) AND held.rem <= CAST(?18 AS INTEGER))`

/**
 * Holds the job's price if the payer's holds (jobs reserved, charged but not settled, and
 * settled in a block after the one `balance` was read at) plus this price fit in `balance`. Returns whether it did.
 */
export async function reserve(db: D1Database, r: NewReservation, balance: BalanceRead): Promise<boolean> {
  const available = balance.available < MAX_RESERVABLE_WEI ? balance.available : MAX_RESERVABLE_WEI
  if (r.price.totalWei > available) return false
  const price = splitWei(r.price.totalWei)
  const limit = splitWei(available)
  const p = r.price
  const result = await db
    .prepare(RESERVE_SQL)
    .bind(
      r.id, r.payer, p.totalWei.toString(), price.gwei, price.rem, p.developerWei.toString(), p.developerAddress,
      p.providerFeeWei.toString(), p.protocolFeeWei.toString(), p.protocolAddress, r.modelName, r.modelVersion,
      r.apiKeyLabel, r.createdAt, r.expiresAt, balance.readAt - SETTLED_MARGIN_MS, limit.gwei, limit.rem, Number(balance.block),
    )
    .run()
  return result.meta.changes === 1
}

/** Drops a reservation whose job failed; a charged one (the job did complete) is kept. */
export async function release(db: D1Database, id: string): Promise<void> {
  await db.prepare("DELETE FROM reservations WHERE id = ? AND status = 'reserved'").bind(id).run()
}

/**
 * Drops the reservation of a job whose answer a spot check refuted (spot-checks/store.ts): the
 * payer is not charged and the device's provider not paid. Only while the job is in no batch yet:
 * a batch's charged jobs are what its settlement debits (settler.ts reads them, then asks the
 * chain, then records), so once the attestation is batched it is too late, and the statement
 * changes nothing. Its attestation stays recorded (and batched later), unpaid.
 */
export function refundStatement(db: D1Database, id: string): D1PreparedStatement {
  return db
    .prepare(
      `DELETE FROM reservations WHERE id = ? AND status IN ('reserved', 'charged') AND settlement_root IS NULL
         AND NOT EXISTS (SELECT 1 FROM attestations a WHERE a.seq = reservations.seq AND a.batch_root IS NOT NULL)`,
    )
    .bind(id)
}

/**
 * Deletes reservations abandoned by a Worker that died mid-job (still `reserved`, expired before
 * `before`); returns how many. A job answered by the Gateway is charged only once its
 * attestation leaves the Gateway's outbox for D1, so `before` must be an instant before which
 * that outbox was completely flushed (see index.ts `scheduled`).
 */
export async function releaseExpired(db: D1Database, before: number): Promise<number> {
  const result = await db.prepare("DELETE FROM reservations WHERE status = 'reserved' AND expires_at < ?").bind(before).run()
  return result.meta.changes
}

/**
 * Charges the reservation to the job, in the same D1 transaction that stores the job's
 * attestation under `seq` (see attestations/outbox-flush.ts): only while it is still `reserved`,
 * so a charge happens once however often that transaction is replayed.
 */
export function chargeStatement(db: D1Database, reservationId: string, jobId: string, seq: number, chargedAt: number): D1PreparedStatement {
  return db
    .prepare(
      `UPDATE reservations SET status = 'charged', job_id = ?1, seq = ?2, charged_at = ?3
       WHERE id = ?4 AND status = 'reserved'`,
    )
    .bind(jobId, seq, chargedAt, reservationId)
}

/** Where a reservation stands (null: released, expired or never made). */
export function reservationState(db: D1Database, id: string): Promise<{ status: string; job_id: string | null } | null> {
  return db.prepare('SELECT status, job_id FROM reservations WHERE id = ?').bind(id).first<{ status: string; job_id: string | null }>()
}

export interface PayerHolds {
  reserved: { jobs: number; wei: bigint }
  chargedUnsettled: { jobs: number; wei: bigint }
}

/** What the payer's jobs hold right now: in flight, and done but not settled on-chain yet. */
export async function payerHolds(db: D1Database, payer: Hex): Promise<PayerHolds> {
  const { results } = await db
    .prepare(
      `SELECT status, COUNT(*) AS jobs, CAST(SUM(price_gwei) AS TEXT) AS gwei, CAST(SUM(price_rem) AS TEXT) AS rem
       FROM reservations WHERE payer = ? AND status IN ('reserved', 'charged') GROUP BY status`,
    )
    .bind(payer)
    .all<{ status: string; jobs: number; gwei: string; rem: string }>()
  const of = (status: string) => {
    const row = results.find((r) => r.status === status)
    return row ? { jobs: row.jobs, wei: joinWei(row.gwei, row.rem) } : { jobs: 0, wei: 0n }
  }
  return { reserved: of('reserved'), chargedUnsettled: of('charged') }
}
