/**
 * Moves the Gateway's outbox of accepted attestations (outbox.ts) to D1, oldest first, one group
 * per D1 transaction: each attestation is stored under its seq, a priced job's reservation is
 * charged, and only then does the group leave the outbox. Flushes run one at a time and always
 * take the lowest seqs, and a group commits whole or not at all, so D1 always holds a contiguous
 * prefix of the seqs: the batcher, which cuts at the first gap, never stops at a hole.
 */
import { messageOf } from '@depinfer/shared'
import { chargeStatement, reservationState } from '../payments/reservations.js'
import type { FlushableOutbox, OutboxEntry } from './outbox.js'
import { INSERT_ATTESTATION_SQL, insertAttestationParams } from './rows.js'
import { wasRefuted } from '../spot-checks/store.js'

/** D1 caps statements per batch; stay well below (a priced job takes two: insert and charge). */
export const MAX_STATEMENTS = 200

export interface FlushReport {
  /** Attestations this flush stored in D1. */
  flushed: number
  /** Attestations still in the outbox afterwards (0 unless the flush failed). */
  pending: number
  /** Why the flush stopped early; what is pending waits for the next flush. */
  error?: string
}

/** The oldest entries that fit in one D1 batch of `maxStatements` (at least one entry). */
export function groupOf(oldest: readonly OutboxEntry[], maxStatements: number): OutboxEntry[] {
  let statements = 0
  let count = 0
  for (const entry of oldest) {
    statements += entry.reservation_id === null ? 1 : 2
    if (count > 0 && statements > maxStatements) break
    count++
  }
  return oldest.slice(0, count)
}

export class OutboxFlusher {
  #running: Promise<FlushReport> | undefined

  constructor(
    private readonly db: D1Database,
    private readonly outbox: FlushableOutbox,
  ) {}

  /**
   * Moves everything in the outbox to D1, or joins the flush under way: that one goes on until
   * the outbox is empty, so it also takes what was appended before this call. Never rejects; a
   * failure is reported (and logged) and what is left waits for the next flush.
   */
  flush(): Promise<FlushReport> {
    // The drain starts a microtask after #running is set, and clears it in the same synchronous
    // step in which it finds the outbox empty: an append never joins a flush that is done.
    this.#running ??= Promise.resolve().then(() => this.#drain())
    return this.#running
  }

  async #drain(): Promise<FlushReport> {
    let flushed = 0
    try {
      for (;;) {
        const group = groupOf(this.outbox.oldest(MAX_STATEMENTS), MAX_STATEMENTS)
        if (group.length === 0) return { flushed, pending: 0 }
        await this.#write(group)
        // A crash right here replays the group next time: INSERT and charge are both idempotent.
        this.outbox.deleteThrough(group.at(-1)!.seq)
        flushed += group.length
      }
    } catch (error) {
      const message = messageOf(error)
      let pending = Number.NaN
      try {
        pending = this.outbox.size()
      } catch {
        // Reported as NaN: unknown, but certainly not "nothing pending".
      }
      console.warn(`attestation outbox: flushed ${flushed}, ${pending} left for the next flush: ${message}`)
      return { flushed, pending, error: message }
    } finally {
      this.#running = undefined
    }
  }

  async #write(group: readonly OutboxEntry[]): Promise<void> {
    const insert = this.db.prepare(INSERT_ATTESTATION_SQL)
    const statements: D1PreparedStatement[] = []
    const charges: { entry: OutboxEntry; reservationId: string; at: number }[] = []
    for (const entry of group) {
      statements.push(insert.bind(...insertAttestationParams(entry)))
      if (entry.reservation_id !== null) {
        charges.push({ entry, reservationId: entry.reservation_id, at: statements.length })
        statements.push(chargeStatement(this.db, entry.reservation_id, entry.job_id, entry.seq, entry.accepted_at))
      }
    }
    // One transaction: the group's attestations and charges are stored together or not at all.
    const results = await this.db.batch(statements)
    for (const { entry, reservationId, at } of charges) {
      if (results[at]?.meta.changes !== 1) await this.#reportUncharged(entry, reservationId)
    }
  }

  /**
   * A priced job whose reservation was not `reserved` any more when its attestation reached D1.
   * The attestation is stored regardless: the answer was already given. The reservation's expiry
   * margin and the cron tick flushing before it releases expired reservations (index.ts) keep
   * this from happening; a replayed group (already charged to this job) lands here too, quietly.
   */
  async #reportUncharged(entry: OutboxEntry, reservationId: string): Promise<void> {
    const state = await reservationState(this.db, reservationId).catch((error: unknown) => (error as Error))
    if (!(state instanceof Error) && state?.status !== 'reserved' && state?.job_id === entry.job_id) return
    // Dropped on purpose: a spot check refuted the answer before its attestation got here.
    if (state === null && (await wasRefuted(this.db, entry.job_id).catch(() => false))) return
    const stands = state instanceof Error ? `unknown (${state.message})` : state === null ? 'gone' : `${state.status} (job ${state.job_id})`
    console.warn(`job ${entry.job_id} (seq ${entry.seq}) was answered but not charged: its reservation ${reservationId} is ${stands}`)
  }
}
