/**
 * Hedged requests ("The Tail at Scale", Dean and Barroso, 2013): when a job's device has not
 * answered within twice what that device answers 95 % of its jobs in, the same job goes to a
 * second device as well and the first valid answer wins. A device that froze or throttled then
 * costs a job about twice its p95 plus one normal run, not half the job's deadline.
 *
 * Why twice the p95 and not the p95 itself (the design's first plan): in the scheduler
 * simulation (`npm run bench:scheduler`, seed 42) most of a loaded fleet's tail is queueing and
 * ordinary variation in run time, which a second device does not cut; hedging at the p95 sent
 * 4.5 % of jobs twice, took 4 more points of the fleet's time, and made p99 worse (169 ms against
 * 155 without). At twice the p95, 0.03 % were hedged, p99 and p99.9 stayed as they were, and the
 * jobs caught on a device as it died went elsewhere.
 *
 * What the gateway keeps for it: each device's recent round trips per kind of job
 * (RoundTripWindows, on its DeviceTable entry) and one HedgeBudget, which caps the extra work
 * hedges may add.
 */
import { nonNegativeVar } from '../env.js'

/** Round trips kept per device and job class: the p95 is then the 2nd largest of the last 32. */
const WINDOW_SIZE = 32
/** Fewer samples than this say too little about a device's tail to hedge on. */
const MIN_SAMPLES = 8
/** A job is hedged once out for this many times this quantile of its device's round trips. */
const HEDGE_QUANTILE = 0.95
const HEDGE_AFTER_QUANTILE_TIMES = 2

/** Kinds of job whose round trips are kept per device, at most (the least recently measured dropped first). */
const MAX_JOB_CLASSES = 64

/**
 * The kind of job a round trip says something about: the model (its published file) and the
 * input's size, in power-of-two bands (inputs across a band's edge fall in two classes, each of
 * which must reach MIN_SAMPLES on its own before it is hedged). A device serving a 2 ms
 * classifier and a 500 ms detector, or a detector fed both thumbnails and full frames, would
 * otherwise have one p95 for both, and every slow job would be hedged for being slower than the
 * fast ones.
 *
 * @example
 * jobClassOf('ab12…', 49_152) === jobClassOf('ab12…', 40_000) // true: both 2^15 to 2^16 bytes
 */
export const jobClassOf = (modelSha256: string, inputBytes: number): string =>
  `${modelSha256}/${Math.floor(Math.log2(inputBytes + 1))}`

/** The last WINDOW_SIZE round trips of one device for one kind of job, in milliseconds, oldest overwritten first. */
export class RoundTripWindow {
  readonly #samplesMs = new Float64Array(WINDOW_SIZE)
  #count = 0

  add(roundTripMs: number): void {
    this.#samplesMs[this.#count % WINDOW_SIZE] = roundTripMs
    this.#count++
  }

  /**
   * How long a job may be out on this device before it is hedged: twice the p95 of its recent
   * round trips (nearest rank), or undefined before MIN_SAMPLES have been measured.
   *
   * @example
   * const window = new RoundTripWindow()
   * for (let ms = 1; ms <= 20; ms++) window.add(ms)
   * window.hedgeAfterMs() // 38: twice the p95, 19
   */
  hedgeAfterMs(): number | undefined {
    const n = Math.min(this.#count, WINDOW_SIZE)
    if (n < MIN_SAMPLES) return undefined
    const sorted = this.#samplesMs.slice(0, n).sort()
    return sorted[Math.ceil(HEDGE_QUANTILE * n) - 1]! * HEDGE_AFTER_QUANTILE_TIMES
  }
}

/** One device's RoundTripWindow per job class (jobClassOf), for the MAX_JOB_CLASSES it ran most recently. */
export class RoundTripWindows {
  readonly #byClass = new Map<string, RoundTripWindow>()

  add(jobClass: string, roundTripMs: number): void {
    let window = this.#byClass.get(jobClass)
    if (window) {
      // Re-inserted: the Map's order is then least recently measured first.
      this.#byClass.delete(jobClass)
    } else {
      window = new RoundTripWindow()
      if (this.#byClass.size >= MAX_JOB_CLASSES) this.#byClass.delete(this.#byClass.keys().next().value!)
    }
    this.#byClass.set(jobClass, window)
    window.add(roundTripMs)
  }

  /** RoundTripWindow.hedgeAfterMs for this class; undefined for a class the device has not run often enough. */
  hedgeAfterMs(jobClass: string): number | undefined {
    return this.#byClass.get(jobClass)?.hedgeAfterMs()
  }
}

/** Hedges allowed per job dispatched, in the long run (HEDGE_RATE): the most extra work hedging may cause. */
export const DEFAULT_HEDGE_RATE = 0.05
/** Hedges that may be sent in a row (after a quiet spell): a frozen device's burst of stuck jobs. */
const MAX_HEDGE_BURST = 10

/**
 * A token bucket for hedges: each job dispatched earns `hedgesPerJob` of one, each hedge spends
 * one. Without it, a fleet-wide slow-down (every round trip past every p95 at once) would double
 * the work exactly when there is least capacity for it. A rate of 0 never hedges.
 *
 * @example
 * const budget = new HedgeBudget(0.05)
 * budget.jobDispatched()
 * budget.take() // true while the starting burst lasts
 */
export class HedgeBudget {
  #tokens: number

  constructor(private readonly hedgesPerJob: number) {
    this.#tokens = hedgesPerJob > 0 ? MAX_HEDGE_BURST : 0
  }

  jobDispatched(): void {
    this.#tokens = Math.min(MAX_HEDGE_BURST, this.#tokens + this.hedgesPerJob)
  }

  /** Spends one hedge if there is one to spend. */
  take(): boolean {
    if (this.#tokens < 1) return false
    this.#tokens--
    return true
  }
}

/** The gateway's budget from its HEDGE_RATE variable (0 to 1, default DEFAULT_HEDGE_RATE; a bad value is warned of). */
export function hedgeBudgetFromEnv(env: { HEDGE_RATE?: string }): HedgeBudget {
  const rate = nonNegativeVar(env.HEDGE_RATE, DEFAULT_HEDGE_RATE, 1, () =>
    console.warn(`HEDGE_RATE=${JSON.stringify(env.HEDGE_RATE)} is not a number from 0 to 1; using ${DEFAULT_HEDGE_RATE}`),
  )
  return new HedgeBudget(rate)
}
