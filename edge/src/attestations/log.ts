/**
 * Appends accepted attestations to D1 with group commit: while one write is in flight, newly
 * accepted attestations queue up and go in the next `batch()` together, so under load the
 * gateway pays one D1 round trip per group instead of one per job, and each caller still learns
 * its attestation's `seq` only once it is durable (the answer is never sent before).
 */
import { INSERT_ATTESTATION_SQL, insertAttestationParams, type AcceptedAttestation } from './rows.js'

/** D1 caps statements per batch; stay well below. */
const MAX_GROUP = 200

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
        const group = this.#queue.splice(0, MAX_GROUP)
        const acceptedAt = this.now()
        try {
          const statement = this.db.prepare(INSERT_ATTESTATION_SQL)
          const results = await this.db.batch<{ seq: number }>(
            group.map((w) => statement.bind(...insertAttestationParams(w.accepted, acceptedAt))),
          )
          group.forEach((w, i) => {
            const seq = results[i]?.results[0]?.seq
            if (typeof seq === 'number') w.resolve(seq)
            else w.reject(new Error('D1 returned no seq for the inserted attestation'))
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
