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
 * (round-trips.ts, on its DeviceTable entry) and one HedgeBudget, which caps the extra work
 * hedges may add.
 */
import { nonNegativeVar } from '../env.js'
import type { ClassRoundTrips } from './round-trips.js'

/** Fewer samples than this say too little about a device's tail to hedge on. */
const MIN_SAMPLES = 8
/** A job is hedged once out for this many times this quantile of its device's round trips. */
const HEDGE_QUANTILE = 0.95
const HEDGE_AFTER_QUANTILE_TIMES = 2

/**
 * How long a job may be out on a device before it is hedged: twice the p95 of that device's
 * recent round trips for such jobs (round-trips.ts), or undefined before MIN_SAMPLES of them
 * have been measured.
 *
 * @example
 * const trips = new ClassRoundTrips()
 * for (let ms = 1; ms <= 20; ms++) trips.add(ms, 0)
 * hedgeAfterMs(trips) // 38: twice the p95, 19
 */
export function hedgeAfterMs(roundTrips: ClassRoundTrips | undefined): number | undefined {
  const p95 = roundTrips?.quantile(HEDGE_QUANTILE, MIN_SAMPLES)
  return p95 === undefined ? undefined : p95 * HEDGE_AFTER_QUANTILE_TIMES
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
