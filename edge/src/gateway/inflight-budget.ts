/**
 * The bytes of job inputs the Gateway holds in flight, and whose: a job is admitted only while
 * every job in flight fits MAX_INFLIGHT_BYTES, and its caller's own within half of that. A
 * Durable Object has 128 MB of memory; a burst of 200 image jobs (3 MB each) sent at once held
 * 4.9 GB in local workerd, which in production would reset the object and lose every job in it.
 * The caller's share, per account (every key of a payer, or of a key's account), keeps one
 * caller's burst from leaving everyone else only refusals.
 */
import { nonNegativeVar } from '../env.js'
import { CallerBusyError, GatewayBusyError } from '../errors/routing.js'

/** Default MAX_INFLIGHT_BYTES: half a Durable Object's memory, the rest for frames, answers and the runtime. */
export const DEFAULT_MAX_INFLIGHT_BYTES = 64 * 1024 * 1024
/** A caller may hold this share of the limit. */
const CALLER_SHARE = 0.5

const MiB = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(2)} MiB`

export class InflightBudget {
  #bytes = 0
  readonly #callers = new Map<string, number>()

  constructor(readonly maxBytes: number) {}

  /**
   * Counts a job of `bytes` from `caller` in flight, or throws: CallerBusyError (429) when the
   * caller's jobs would pass its share, GatewayBusyError (503) when all jobs would pass the
   * limit. A job with nothing else in flight (of its caller, or at all) is always admitted, so no
   * limit makes a job impossible, only more of them at once. Returns the release, to call when
   * the job ends (later calls do nothing).
   */
  admit(caller: string, bytes: number): () => void {
    // 0: no limit (as HEDGE_RATE 0 turns hedging off), for a gateway whose memory is not the bound.
    if (this.maxBytes === 0) return () => {}
    const held = this.#callers.get(caller) ?? 0
    const share = Math.floor(this.maxBytes * CALLER_SHARE)
    if (held > 0 && held + bytes > share) {
      throw new CallerBusyError(
        `this account's jobs in flight hold ${MiB(held)} of inputs; this job's ${MiB(bytes)} would pass its share of ${MiB(share)} (half of the gateway's MAX_INFLIGHT_BYTES): wait for answers before sending more`,
      )
    }
    if (this.#bytes > 0 && this.#bytes + bytes > this.maxBytes) {
      throw new GatewayBusyError(`the gateway holds ${MiB(this.#bytes)} of jobs' inputs in flight; this job's ${MiB(bytes)} would pass its limit of ${MiB(this.maxBytes)} (MAX_INFLIGHT_BYTES)`)
    }
    this.#bytes += bytes
    this.#callers.set(caller, held + bytes)
    let released = false
    return () => {
      if (released) return
      released = true
      this.#bytes -= bytes
      const left = (this.#callers.get(caller) ?? 0) - bytes
      if (left > 0) this.#callers.set(caller, left)
      else this.#callers.delete(caller)
    }
  }

  get bytesInFlight(): number {
    return this.#bytes
  }
}

/** The budget from MAX_INFLIGHT_BYTES (a bad value is warned of). */
export function inflightBudgetFromEnv(env: { MAX_INFLIGHT_BYTES?: string }): InflightBudget {
  const bytes = nonNegativeVar(env.MAX_INFLIGHT_BYTES, DEFAULT_MAX_INFLIGHT_BYTES, Number.MAX_SAFE_INTEGER, () =>
    console.warn(`MAX_INFLIGHT_BYTES=${JSON.stringify(env.MAX_INFLIGHT_BYTES)} is not a number of bytes; using ${DEFAULT_MAX_INFLIGHT_BYTES}`),
  )
  return new InflightBudget(Math.floor(bytes))
}
