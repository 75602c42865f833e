/**
 * How the Gateway records an accepted attestation: synchronously, under the next `seq`, in the
 * outbox in its own storage (outbox.ts), so the answer waits for a local write and never for
 * D1. D1 gets it from the flush started shortly after (outbox-flush.ts), or if that fails from
 * the Gateway's alarm or a reader that needs D1 complete first (the cron tick, the proofs and
 * account APIs), in seq order either way.
 *
 * `seq` continues where D1 left off: before this object's first append ever, its counter starts
 * at D1's MAX(seq) (attestations recorded before the outbox existed, or by a Gateway whose
 * storage is gone). The Gateway is the only writer of D1's `attestations`, so once started the
 * counter stays ahead of D1 without asking it again. Several gateway shards would each need
 * their own disjoint seq range (and the batcher would cut per range); only one gateway is built.
 */
import { messageOf } from '@depinfer/shared'
import { OutboxFlusher, type FlushReport } from './outbox-flush.js'
import { AttestationOutbox } from './outbox.js'
import { lastRecordedSeq, type AcceptedAttestation } from './rows.js'

/**
 * How long a recorded attestation may wait for company before the flush to D1 starts. Readers
 * that need D1 complete flush first, so the lag is invisible to them; what it buys is fewer
 * flushes, each a D1 batch plus an output-gated delete on the thread that answers jobs. At
 * concurrency 1, 1,000 ms instead of 50 ms took 0.5–1.7 ms off the p50 in each of four paired
 * runs (bench/RESULTS.md).
 */
const FLUSH_DELAY_MS = 1000

export class AttestationRecorder {
  #flushDue: ReturnType<typeof setTimeout> | undefined
  readonly #outbox: AttestationOutbox
  readonly #flusher: OutboxFlusher
  #counterStarted: boolean
  #seqFloor: Promise<void> | undefined

  constructor(
    storage: DurableObjectStorage,
    private readonly db: D1Database,
    private readonly now: () => number = Date.now,
  ) {
    this.#outbox = new AttestationOutbox(storage)
    this.#flusher = new OutboxFlusher(db, this.#outbox)
    this.#counterStarted = this.#outbox.lastSeq() !== undefined
    // Asked now rather than on the first job's path. Not in blockConcurrencyWhile: a D1 outage
    // would then take the whole Gateway down, and a started counter does not need the answer.
    this.#applySeqFloor().catch(() => {})
  }

  /** Records the attestation (durable in this object's storage on return) and returns its seq. */
  async record(accepted: AcceptedAttestation): Promise<number> {
    if (!this.#counterStarted) await this.#applySeqFloor()
    const seq = this.#outbox.append(accepted, this.now())
    this.#flushSoon()
    return seq
  }

  /**
   * Starts a flush FLUSH_DELAY_MS from now unless one is already due: the answer goes out while
   * D1 catches up, and the jobs answered meanwhile go in the same D1 transaction, so a steady
   * trickle of jobs costs one D1 write per FLUSH_DELAY_MS rather than one per job (each such
   * write also costs an output-gated delete in this object's storage).
   */
  #flushSoon(): void {
    if (this.#flushDue) return
    this.#flushDue = setTimeout(() => {
      this.#flushDue = undefined
      void this.#flusher.flush()
    }, FLUSH_DELAY_MS)
  }

  /** Moves everything recorded so far to D1 and waits; never rejects. */
  flush(): Promise<FlushReport> {
    return this.#flusher.flush()
  }

  /** Raises the counter to D1's MAX(seq), once per object; a failure is retried by the next call. */
  #applySeqFloor(): Promise<void> {
    this.#seqFloor ??= lastRecordedSeq(this.db).then(
      (recorded) => {
        const own = this.#outbox.lastSeq()
        if (own !== undefined && recorded > own) {
          console.warn(`D1 holds attestations up to seq ${recorded}, past this Gateway's counter at ${own}: is something else writing them?`)
        }
        this.#outbox.raiseSeqFloor(recorded)
        this.#counterStarted = true
      },
      (error: unknown) => {
        this.#seqFloor = undefined
        throw new Error(`cannot start the attestation seq counter, D1's last seq is unreadable: ${messageOf(error)}`, { cause: error })
      },
    )
    return this.#seqFloor
  }
}
