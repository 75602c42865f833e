/**
 * The Gateway's outbox of accepted attestations, in its Durable Object's own SQLite storage
 * (`ctx.storage.sql`): an attestation is written here, under the next `seq`, before its job is
 * answered, and stays until OutboxFlusher (outbox-flush.ts) has stored it in D1. The counter
 * that assigns `seq` lives here too. Everything is synchronous and local to the object: an
 * append costs no network round trip.
 */
import { recordedAttestation, type AcceptedAttestation, type RecordedAttestation } from './rows.js'

/** A recorded attestation waiting for D1, and the reservation its flush charges (priced jobs). */
export type OutboxEntry = RecordedAttestation & { reservation_id: string | null }

// Single statements: `sql.exec` is given one at a time.
const SCHEMA = [
  // One row per accepted attestation not in D1 yet, with the columns of D1's `attestations`.
  `CREATE TABLE IF NOT EXISTS attestation_outbox (
     seq                INTEGER PRIMARY KEY,
     job_id             TEXT NOT NULL,
     model_hash         TEXT NOT NULL,
     input_hash         TEXT NOT NULL,
     output_hash        TEXT NOT NULL,
     device             TEXT NOT NULL,
     price_wei          TEXT NOT NULL,
     completed_at       TEXT NOT NULL,
     signature          TEXT NOT NULL,
     chain_id           TEXT NOT NULL,
     verifying_contract TEXT NOT NULL,
     device_id          TEXT NOT NULL,
     accepted_at        INTEGER NOT NULL,
     reservation_id     TEXT
   )`,
  // The last seq assigned (one row): apart from the outbox, which empties as it is flushed.
  `CREATE TABLE IF NOT EXISTS attestation_seq (
     id        INTEGER PRIMARY KEY CHECK (id = 1),
     last_seq  INTEGER NOT NULL
   )`,
]

const INSERT_SQL = `INSERT INTO attestation_outbox
  (seq, job_id, model_hash, input_hash, output_hash, device, price_wei, completed_at, signature,
   chain_id, verifying_contract, device_id, accepted_at, reservation_id)
  VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

/** What OutboxFlusher needs of an outbox (the flusher's unit test fakes it). */
export interface FlushableOutbox {
  /** Up to `limit` entries, oldest (lowest seq) first. */
  oldest(limit: number): OutboxEntry[]
  /** Drops the entries up to `seq`, once D1 has them. */
  deleteThrough(seq: number): void
  size(): number
}

export class AttestationOutbox implements FlushableOutbox {
  readonly #sql: SqlStorage

  constructor(private readonly storage: DurableObjectStorage) {
    this.#sql = storage.sql
    for (const statement of SCHEMA) this.#sql.exec(statement)
  }

  /** The last seq assigned; undefined until the counter is started with `raiseSeqFloor`. */
  lastSeq(): number | undefined {
    return this.#sql.exec<{ last_seq: number }>('SELECT last_seq FROM attestation_seq WHERE id = 1').toArray()[0]?.last_seq
  }

  /** Starts the counter at `floor`, or moves it up to `floor` (never down). */
  raiseSeqFloor(floor: number): void {
    this.#sql.exec(
      `INSERT INTO attestation_seq (id, last_seq) VALUES (1, ?)
       ON CONFLICT (id) DO UPDATE SET last_seq = MAX(last_seq, excluded.last_seq)`,
      floor,
    )
  }

  /**
   * Records the attestation under the next seq and returns it. The counter and the row change in
   * one transaction, so seqs are strictly increasing with no gaps.
   */
  append(accepted: AcceptedAttestation, acceptedAt: number): number {
    return this.storage.transactionSync(() => {
      const counter = this.#sql
        .exec<{ last_seq: number }>('UPDATE attestation_seq SET last_seq = last_seq + 1 WHERE id = 1 RETURNING last_seq')
        .toArray()[0]
      if (!counter) throw new Error('the seq counter was never started from D1 (raiseSeqFloor)')
      const r = recordedAttestation(accepted, counter.last_seq, acceptedAt)
      this.#sql.exec(
        INSERT_SQL,
        r.seq, r.job_id, r.model_hash, r.input_hash, r.output_hash, r.device, r.price_wei, r.completed_at, r.signature,
        r.chain_id, r.verifying_contract, r.device_id, r.accepted_at, accepted.reservationId ?? null,
      )
      return r.seq
    })
  }

  oldest(limit: number): OutboxEntry[] {
    return this.#sql.exec<OutboxEntry>('SELECT * FROM attestation_outbox ORDER BY seq LIMIT ?', limit).toArray()
  }

  deleteThrough(seq: number): void {
    this.#sql.exec('DELETE FROM attestation_outbox WHERE seq <= ?', seq)
  }

  size(): number {
    return this.#sql.exec<{ n: number }>('SELECT COUNT(*) AS n FROM attestation_outbox').one().n
  }
}
