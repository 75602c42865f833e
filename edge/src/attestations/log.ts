/**
 * Appends accepted attestations to D1 with group commit: while one write is in flight, newly
 * accepted attestations queue up and go in the next `batch()` together, so under load the
 * gateway pays one D1 round trip per group instead of one per job, and each caller still learns
 * its attestation's `seq` only once it is durable (the answer is never sent before).
 */
import { chargeStatement } from '../payments/reservations.js'
import { INSERT_ATTESTATION_SQL, INSERT_PRICED_ATTESTATION_SQL, insertAttestationParams, type AcceptedAttestation } from './rows.js'

/** D1 caps statements per batch; stay well below (a priced job takes two: insert and charge). */
const MAX_STATEMENTS = 200

interface Waiting {
  accepted: AcceptedAttestation
  resolve: (seq: number) => void
  reject: (error: unknown) => void
}

export class AttestationLog {
  #queue: Waiting[] = []
  #flushing = false

  constructor(
    private readonly db: D1Database,
    private readonly now: () => number = Date.now,
  ) {}

  /** Records the attestation; resolves with its `seq` once stored. */
  append(accepted: AcceptedAttestation): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      this.#queue.push({ accepted, resolve, reject })
      if (!this.#flushing) void this.#flush()
    })
  }

  async #flush(): Promise<void> {
    this.#flushing = true
    try {
      while (this.#queue.length > 0) {
        let count = 0
        let statementsNeeded = 0
        for (const w of this.#queue) {
          statementsNeeded += w.accepted.reservationId === undefined ? 1 : 2
          if (count > 0 && statementsNeeded > MAX_STATEMENTS) break
          count++
        }
        const group = this.#queue.splice(0, count)
        const acceptedAt = this.now()
        try {
          const free = this.db.prepare(INSERT_ATTESTATION_SQL)
          const priced = this.db.prepare(INSERT_PRICED_ATTESTATION_SQL)
          // A priced job's INSERT is followed by its charge; remember where each INSERT is.
          const statements: D1PreparedStatement[] = []
          const insertAt = group.map(({ accepted }) => {
            const at = statements.length
            const params = insertAttestationParams(accepted, acceptedAt)
            if (accepted.reservationId === undefined) {
              statements.push(free.bind(...params))
            } else {
              statements.push(priced.bind(...params, accepted.reservationId))
              statements.push(chargeStatement(this.db, accepted.reservationId, accepted.attestation.jobId, acceptedAt))
            }
            return at
          })
          const results = await this.db.batch<{ seq: number }>(statements)
          group.forEach((w, i) => {
            const seq = results[insertAt[i]!]?.results[0]?.seq
            if (typeof seq === 'number') w.resolve(seq)
            else if (w.accepted.reservationId !== undefined) {
              // Only when the reservation expired or was released first: the job is not charged,
              // so its result is not handed out either.
              w.reject(new Error(`reservation ${w.accepted.reservationId} is no longer held; the attestation was not recorded`))
            } else w.reject(new Error('D1 returned no seq for the inserted attestation'))
          })
        } catch (error) {
          // The batch is one transaction: nothing of this group was stored.
          for (const w of group) w.reject(error)
        }
      }
    } finally {
      this.#flushing = false
    }
  }
}
