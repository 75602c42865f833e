/// <reference types="@cloudflare/workers-types/2023-07-01" />
// (The flusher is typed against the Workers runtime's D1; the fakes below stand in for it.)
/**
 * The outbox flusher's own logic, against an in-memory outbox and a fake D1 that applies each
 * batch as one transaction: groups, seq order, one flush at a time, nothing stranded, failures
 * leaving D1 a contiguous prefix, replays harmless. The real Durable Object storage and D1 are
 * exercised end to end in test/e2e/attestation.test.ts.
 */
import { afterEach, describe, expect, it, vi } from 'vitest'
import { groupOf, MAX_STATEMENTS, OutboxFlusher } from './outbox-flush.js'
import type { FlushableOutbox, OutboxEntry } from './outbox.js'

function entry(seq: number, reservationId: string | null = null): OutboxEntry {
  return {
    seq,
    job_id: `0x${seq.toString(16).padStart(64, '0')}`,
    model_hash: '0x01',
    input_hash: '0x02',
    output_hash: '0x03',
    device: '0x04',
    price_wei: reservationId === null ? '0' : '5',
    completed_at: '1',
    signature: '0x05',
    chain_id: '31337',
    verifying_contract: '0x06',
    device_id: 'device',
    accepted_at: 1_000 + seq,
    reservation_id: reservationId,
  }
}

class MemoryOutbox implements FlushableOutbox {
  entries: OutboxEntry[] = []
  /** Deletes to fail, as if the object were reset between D1's commit and the delete. */
  failDeletes = 0
  afterDelete: (() => void) | undefined
  append(...added: OutboxEntry[]): void {
    this.entries.push(...added)
  }
  oldest(limit: number): OutboxEntry[] {
    return this.entries.slice(0, limit)
  }
  deleteThrough(seq: number): void {
    if (this.failDeletes > 0) {
      this.failDeletes--
      throw new Error('the object was reset')
    }
    this.entries = this.entries.filter((e) => e.seq > seq)
    this.afterDelete?.()
  }
  size(): number {
    return this.entries.length
  }
}

interface Bound {
  sql: string
  params: unknown[]
  first(): Promise<unknown>
}

/** The statements the flusher sends, applied the way D1 would: each batch all or nothing. */
class FakeD1 {
  /** seq → job id */
  readonly attestations = new Map<number, string>()
  readonly reservations = new Map<string, { status: string; job_id: string | null; seq: number | null }>()
  readonly batchSizes: number[] = []
  /** Which batches fail, by index (0: the first this fake is sent). */
  failBatches: number[] = []
  #batchesSeen = 0
  inFlight = 0
  maxInFlight = 0
  /** While set, batches wait for it: lets a test append while a flush is under way. */
  hold: Promise<void> | undefined

  prepare(sql: string) {
    return {
      bind: (...params: unknown[]): Bound => ({
        sql,
        params,
        first: async () => {
          const r = this.reservations.get(params[0] as string)
          return r ? { status: r.status, job_id: r.job_id } : null
        },
      }),
    }
  }

  async batch(statements: Bound[]): Promise<{ meta: { changes: number } }[]> {
    this.inFlight++
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight)
    try {
      await (this.hold ?? Promise.resolve())
      const n = this.#batchesSeen++
      if (this.failBatches.includes(n)) throw new Error('D1 is unavailable')
      this.batchSizes.push(statements.length)
      const attestations = new Map(this.attestations)
      const reservations = new Map([...this.reservations].map(([id, r]) => [id, { ...r }]))
      const results = statements.map(({ sql, params }) => {
        if (sql.includes('INSERT INTO attestations')) {
          const [seq, jobId] = params as [number, string]
          if ([...attestations.values()].includes(jobId)) return { meta: { changes: 0 } } // ON CONFLICT (job_id) DO NOTHING
          if (attestations.has(seq)) throw new Error(`UNIQUE constraint failed: attestations.seq (${seq})`)
          attestations.set(seq, jobId)
          return { meta: { changes: 1 } }
        }
        if (sql.includes('UPDATE reservations')) {
          const [jobId, seq, , id] = params as [string, number, number, string]
          const r = reservations.get(id)
          if (r?.status !== 'reserved') return { meta: { changes: 0 } }
          Object.assign(r, { status: 'charged', job_id: jobId, seq })
          return { meta: { changes: 1 } }
        }
        throw new Error(`unexpected statement ${sql}`)
      })
      // Committed only once every statement went through.
      for (const [seq, jobId] of attestations) this.attestations.set(seq, jobId)
      for (const [id, r] of reservations) this.reservations.set(id, r)
      return results
    } finally {
      this.inFlight--
    }
  }

  seqs(): number[] {
    return [...this.attestations.keys()].sort((a, b) => a - b)
  }
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i)

function setup() {
  const outbox = new MemoryOutbox()
  const db = new FakeD1()
  const flusher = new OutboxFlusher(db as unknown as D1Database, outbox)
  return { outbox, db, flusher }
}

afterEach(() => {
  vi.restoreAllMocks()
})

describe('groupOf', () => {
  it('takes the oldest entries that fit the statement budget, a priced one counting two', () => {
    const free = range(1, 250).map((seq) => entry(seq))
    expect(groupOf(free, 200).map((e) => e.seq)).toEqual(range(1, 200))
    const priced = range(1, 150).map((seq) => entry(seq, `r${seq}`))
    expect(groupOf(priced, 200)).toHaveLength(100)
    // 199 free + one priced would be 201 statements: the priced one waits for the next group.
    const mixed = [...range(1, 199).map((seq) => entry(seq)), entry(200, 'r200'), entry(201)]
    expect(groupOf(mixed, 200).map((e) => e.seq)).toEqual(range(1, 199))
    expect(groupOf([entry(1, 'r1')], 1)).toHaveLength(1)
    expect(groupOf([], 200)).toEqual([])
  })
})

describe('OutboxFlusher', () => {
  it('stores everything in seq order, a group per D1 transaction, charging each priced job once', async () => {
    const { outbox, db, flusher } = setup()
    const entries = range(1, 450).map((seq) => (seq % 3 === 0 ? entry(seq, `r${seq}`) : entry(seq)))
    for (const e of entries) if (e.reservation_id) db.reservations.set(e.reservation_id, { status: 'reserved', job_id: null, seq: null })
    outbox.append(...entries)

    expect(await flusher.flush()).toEqual({ flushed: 450, pending: 0 })
    expect(db.seqs()).toEqual(range(1, 450))
    expect(outbox.size()).toBe(0)
    expect(db.batchSizes.every((n) => n <= MAX_STATEMENTS)).toBe(true)
    expect(db.batchSizes.reduce((a, b) => a + b, 0)).toBe(450 + 150)
    expect(db.reservations.get('r3')).toEqual({ status: 'charged', job_id: entry(3).job_id, seq: 3 })
    expect([...db.reservations.values()].every((r) => r.status === 'charged')).toBe(true)
  })

  it('runs one flush at a time, and the one under way takes what is appended meanwhile', async () => {
    const { outbox, db, flusher } = setup()
    expect(await flusher.flush()).toEqual({ flushed: 0, pending: 0 })
    let release!: () => void
    db.hold = new Promise<void>((resolve) => (release = resolve))
    outbox.append(entry(1))
    const first = flusher.flush()
    await new Promise((resolve) => setTimeout(resolve, 0))
    expect(db.inFlight).toBe(1)
    outbox.append(entry(2), entry(3))
    const joined = flusher.flush()
    expect(joined).toBe(first)
    release()
    expect(await first).toEqual({ flushed: 3, pending: 0 })
    expect(db.maxInFlight).toBe(1)
    expect(db.seqs()).toEqual([1, 2, 3])

    // Once done, the next append gets a flush of its own.
    db.hold = undefined
    outbox.append(entry(4))
    expect(await flusher.flush()).toEqual({ flushed: 1, pending: 0 })
    expect(db.seqs()).toEqual([1, 2, 3, 4])
  })

  it('never strands an entry appended just as a flush finds the outbox empty', async () => {
    const { outbox, db, flusher } = setup()
    outbox.append(entry(1))
    // Right after the flush's last delete, before anything that waits on the flush resumes: the
    // flush is about to find the outbox empty, and this append must still get one.
    outbox.afterDelete = () =>
      queueMicrotask(() => {
        outbox.append(entry(2))
        void flusher.flush()
      })
    await flusher.flush()
    outbox.afterDelete = undefined
    await vi.waitFor(() => expect(db.seqs()).toEqual([1, 2]))
    expect(outbox.size()).toBe(0)
  })

  it('never strands an entry when appends and flushes race from many promise chains', async () => {
    const { outbox, db, flusher } = setup()
    // Appends and flushes racing from many promise chains, as jobs answered back to back do
    // (each takes the next seq as it appends, as the real outbox assigns them).
    let last = 0
    await Promise.all(
      range(1, 300).map(async (job) => {
        // Spread over as many microtasks as flushes take, so appends land at every step of one.
        for (let i = job * 2; i > 0; i--) await Promise.resolve()
        outbox.append(entry(++last))
        void flusher.flush()
      }),
    )
    await vi.waitFor(() => expect(outbox.size()).toBe(0))
    expect(db.seqs()).toEqual(range(1, 300))
  })

  it('with D1 down keeps everything in the outbox and stores it all, in order, once D1 is back', async () => {
    const { outbox, db, flusher } = setup()
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {})
    db.failBatches = [0, 1]
    outbox.append(...range(1, 5).map((seq) => entry(seq)))
    expect(await flusher.flush()).toEqual({ flushed: 0, pending: 5, error: 'D1 is unavailable' })
    outbox.append(...range(6, 8).map((seq) => entry(seq)))
    expect(await flusher.flush()).toMatchObject({ flushed: 0, pending: 8 })
    expect(db.seqs()).toEqual([])
    expect(warn).toHaveBeenCalledTimes(2)

    expect(await flusher.flush()).toEqual({ flushed: 8, pending: 0 })
    expect(db.seqs()).toEqual(range(1, 8))
  })

  it('leaves D1 a contiguous prefix when a later group fails', async () => {
    const { outbox, db, flusher } = setup()
    vi.spyOn(console, 'warn').mockImplementation(() => {})
    db.failBatches = [1]
    outbox.append(...range(1, 300).map((seq) => entry(seq)))
    expect(await flusher.flush()).toMatchObject({ flushed: MAX_STATEMENTS, pending: 300 - MAX_STATEMENTS })
    expect(db.seqs()).toEqual(range(1, MAX_STATEMENTS))
    expect(outbox.oldest(1)[0]!.seq).toBe(MAX_STATEMENTS + 1)
    expect(await flusher.flush()).toEqual({ flushed: 300 - MAX_STATEMENTS, pending: 0 })
    expect(db.seqs()).toEqual(range(1, 300))
  })

  it('replays a group D1 already has (its outbox delete was lost) without a duplicate or a second charge', async () => {
    const { outbox, db, flusher } = setup()
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {})
    db.reservations.set('r2', { status: 'reserved', job_id: null, seq: null })
    outbox.append(entry(1), entry(2, 'r2'))
    outbox.failDeletes = 1
    expect(await flusher.flush()).toMatchObject({ flushed: 0, pending: 2 })
    expect(await flusher.flush()).toEqual({ flushed: 2, pending: 0 })
    expect(db.seqs()).toEqual([1, 2])
    expect(db.reservations.get('r2')).toEqual({ status: 'charged', job_id: entry(2).job_id, seq: 2 })
    // Only the lost delete is worth a warning; the replayed charge is recognised as this job's.
    expect(warn).toHaveBeenCalledTimes(1)
  })

  it('records a priced job whose reservation is gone, uncharged, with a warning', async () => {
    const { outbox, db, flusher } = setup()
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {})
    outbox.append(entry(1, 'released'))
    expect(await flusher.flush()).toEqual({ flushed: 1, pending: 0 })
    expect(db.seqs()).toEqual([1])
    expect(warn).toHaveBeenCalledWith(expect.stringContaining('reservation released is gone'))
  })
})
