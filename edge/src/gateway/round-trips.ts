/**
 * What the gateway measures of its jobs' round trips (sent to answered), per kind of job: each
 * device's recent ones (RoundTrips, on its DeviceTable entry: its p95 says when a job there is
 * hedged, its EWMA what the scheduler expects a job to take there) and the whole fleet's
 * (FleetRoundTrips: the fastest, for devices not measured yet, and the typical one, which a
 * device's stale figure relaxes towards).
 */
import { useRecent } from './recent-map.js'

/** Weight of the newest round trip in an EWMA (a device's per job class, and its overall one). */
export const EWMA_WEIGHT = 0.2
/** Round trips kept per device and job class: the p95 is then the 2nd largest of the last 32. */
const WINDOW_SIZE = 32
/** Kinds of job whose round trips are kept per device, at most (the least recently measured dropped first). */
const MAX_JOB_CLASSES = 64
/** Kinds of job the fleet's figures are kept for, at most (the least recently measured dropped first). */
const MAX_FLEET_JOB_CLASSES = 1_024
/** The fleet's typical round trip is the median of blocks of this many (the first block: at 1, 2, 4, … of them). */
const TYPICAL_BLOCK = 64

/**
 * The kind of job a round trip says something about: the model (its published file) and the
 * input's size, in power-of-two bands (inputs across a band's edge fall in two classes, each
 * measured on its own). A device serving a 2 ms classifier and a 500 ms detector, or a detector
 * fed both thumbnails and full frames, would otherwise have one figure for both: every slow job
 * would be hedged for being slower than the fast ones, and the device's fast jobs would be
 * expected to take as long as its slow ones.
 *
 * @example
 * jobClassOf('ab12…', 49_152) === jobClassOf('ab12…', 40_000) // true: both 2^15 to 2^16 bytes
 */
export const jobClassOf = (modelSha256: string, inputBytes: number): string =>
  `${modelSha256}/${Math.floor(Math.log2(inputBytes + 1))}`

/** One device's round trips for one kind of job: the last WINDOW_SIZE, their EWMA, and when the last came. */
export class ClassRoundTrips {
  readonly #samplesMs = new Float64Array(WINDOW_SIZE)
  #count = 0
  #ewmaMs = 0
  #lastAt = 0
  #serviceMs: number | undefined
  /** The median, once asked for, until the next round trip (the scheduler asks at every pick). */
  #medianMs: number | undefined

  /** `serviceMs`: the device's own time for the job, when it said (JobTimings: its run's share). */
  add(roundTripMs: number, at: number, serviceMs?: number): void {
    // A device's first run of a kind is often a cold one (onnxruntime allocates and picks its
    // kernels then: 5x a warm detector run, measured): a faster second answer replaces it
    // rather than being averaged with it.
    const restart = this.#count === 0 || (this.#count === 1 && roundTripMs < this.#ewmaMs)
    this.#ewmaMs = restart ? roundTripMs : this.#ewmaMs * (1 - EWMA_WEIGHT) + roundTripMs * EWMA_WEIGHT
    if (serviceMs !== undefined) {
      this.#serviceMs =
        this.#serviceMs === undefined || (this.#count === 1 && serviceMs < this.#serviceMs)
          ? serviceMs
          : this.#serviceMs * (1 - EWMA_WEIGHT) + serviceMs * EWMA_WEIGHT
    }
    this.#samplesMs[this.#count % WINDOW_SIZE] = roundTripMs
    this.#count++
    this.#lastAt = at
    this.#medianMs = undefined
  }

  /** The EWMA of every round trip measured (weight EWMA_WEIGHT; from the second when it was faster than the first); there is at least one. */
  get ewmaMs(): number {
    return this.#ewmaMs
  }

  /**
   * The EWMA of the device's own time per job (its model run's share, JobTimings), queueing and
   * the network aside: how fast a queue of such jobs drains there. Undefined until it said.
   */
  get serviceMs(): number | undefined {
    return this.#serviceMs
  }

  /** When the last round trip was measured. */
  get lastAt(): number {
    return this.#lastAt
  }

  /** The median (nearest rank: the lower middle) of the last WINDOW_SIZE round trips; undefined while fewer than two were measured. */
  get medianMs(): number | undefined {
    return (this.#medianMs ??= this.quantile(0.5, 2))
  }

  /**
   * The `q` quantile (nearest rank) of the last WINDOW_SIZE round trips, or undefined while
   * fewer than `minSamples` have been measured.
   *
   * @example
   * const trips = new ClassRoundTrips()
   * for (let ms = 1; ms <= 20; ms++) trips.add(ms, 0)
   * trips.quantile(0.95, 8) // 19
   */
  quantile(q: number, minSamples: number): number | undefined {
    const n = Math.min(this.#count, WINDOW_SIZE)
    if (n < minSamples) return undefined
    const sorted = this.#samplesMs.slice(0, n).sort()
    return sorted[Math.ceil(q * n) - 1]!
  }
}

/** One device's ClassRoundTrips per job class (jobClassOf), for the MAX_JOB_CLASSES it ran most recently. */
export class RoundTrips {
  readonly #byClass = new Map<string, ClassRoundTrips>()

  add(jobClass: string, roundTripMs: number, at: number, serviceMs?: number): void {
    useRecent(this.#byClass, jobClass, () => new ClassRoundTrips(), MAX_JOB_CLASSES).add(roundTripMs, at, serviceMs)
  }

  /** This device's round trips of a class; undefined for one it has not answered (or not lately). */
  of(jobClass: string): ClassRoundTrips | undefined {
    return this.#byClass.get(jobClass)
  }

  classes(): IterableIterator<[string, ClassRoundTrips]> {
    return this.#byClass.entries()
  }
}

/** The fleet's figures for one kind of job. */
interface FleetClass {
  fastestMs: number
  typicalMs: number
  block: Float64Array
  /** Round trips in the current block. */
  count: number
  /** Whether a full block was ever summed up (before, the typical is refreshed at 1, 2, 4, … round trips). */
  filled: boolean
}

/**
 * What every device's round trips say, per kind of job: the fastest (the optimistic guess for a
 * device not measured yet) and the typical one (the median of the last block of TYPICAL_BLOCK
 * round trips on any device). Both change in steps, counted by `version`, so whoever caches
 * estimates built on them (the scheduler simulation) knows when to rebuild them.
 */
export class FleetRoundTrips {
  readonly #byClass = new Map<string, FleetClass>()
  #fastestMs = Number.POSITIVE_INFINITY
  #version = 0

  /** `defaultMs`: what `fastestMs` says before any round trip was measured. */
  constructor(private readonly defaultMs: number) {}

  get version(): number {
    return this.#version
  }

  add(jobClass: string, roundTripMs: number): void {
    const figures = useRecent(
      this.#byClass,
      jobClass,
      () => ({ fastestMs: Infinity, typicalMs: roundTripMs, block: new Float64Array(TYPICAL_BLOCK), count: 0, filled: false }),
      MAX_FLEET_JOB_CLASSES,
    )
    if (roundTripMs < this.#fastestMs) {
      this.#fastestMs = roundTripMs
      this.#version++
    }
    if (roundTripMs < figures.fastestMs) {
      figures.fastestMs = roundTripMs
      this.#version++
    }
    figures.block[figures.count++] = roundTripMs
    const full = figures.count === TYPICAL_BLOCK
    if (full || (!figures.filled && (figures.count & (figures.count - 1)) === 0)) {
      const sorted = figures.block.slice(0, figures.count).sort()
      figures.typicalMs = sorted[Math.floor((figures.count - 1) / 2)]!
      this.#version++
    }
    if (full) {
      figures.count = 0
      figures.filled = true
    }
  }

  /** The fastest round trip of this class on any device; of any class when none is named or this one was never measured. */
  fastestMs(jobClass?: string): number {
    const fastestMs = (jobClass === undefined ? undefined : this.#byClass.get(jobClass)?.fastestMs) ?? this.#fastestMs
    return fastestMs === Number.POSITIVE_INFINITY ? this.defaultMs : fastestMs
  }

  /** The typical round trip of this class (a recent median); undefined while it was never measured. */
  typicalMs(jobClass: string): number | undefined {
    return this.#byClass.get(jobClass)?.typicalMs
  }
}
