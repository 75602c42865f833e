/**
 * Seeded pseudo-random numbers for the scheduler simulation. mulberry32 (the generator the
 * scheduler's own unit test uses): 32-bit state, fast, and good enough for Monte Carlo at this
 * scale; every stream is derived from the one `--seed`, so a run is reproducible bit for bit.
 */
import { seededRandom } from '../../shared/src/seeded-random.js'

/** A 32-bit seed for stream `stream` of `seed` (splitmix32 finaliser), so streams do not overlap. */
export function deriveSeed(seed: number, stream: number): number {
  let z = (Math.imul(seed >>> 0, 0x9e3779b9) + Math.imul(stream + 1, 0x85ebca6b)) >>> 0
  z = Math.imul(z ^ (z >>> 16), 0x21f0aaad)
  z = Math.imul(z ^ (z >>> 15), 0x735a2d97)
  return (z ^ (z >>> 15)) >>> 0
}

export class Rng {
  readonly #uniform: () => number
  /** A second normal deviate from Box–Muller, kept for the next call. */
  #spareNormal: number | undefined

  constructor(seed: number) {
    this.#uniform = seededRandom(seed)
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.#uniform()
  }

  /** `next` as a free function, the shape `pickDevice(candidates, random)` takes. */
  readonly float = (): number => this.next()

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n)
  }

  uniform(min: number, max: number): number {
    return min + (max - min) * this.next()
  }

  /** Log-uniform in [min, max]: equal odds for every factor of 2 in the range. */
  logUniform(min: number, max: number): number {
    return min * Math.exp(Math.log(max / min) * this.next())
  }

  /** Exponential with the given mean (1 − u keeps the argument of log in (0, 1]). */
  exp(mean: number): number {
    return -mean * Math.log(1 - this.next())
  }

  /** Standard normal (Box–Muller). */
  normal(): number {
    const spare = this.#spareNormal
    if (spare !== undefined) {
      this.#spareNormal = undefined
      return spare
    }
    const u = 1 - this.next()
    const v = this.next()
    const r = Math.sqrt(-2 * Math.log(u))
    this.#spareNormal = r * Math.sin(2 * Math.PI * v)
    return r * Math.cos(2 * Math.PI * v)
  }

  /** Lognormal factor with mean 1 (so it adds noise without shifting the mean). */
  noise(sigma: number): number {
    return sigma === 0 ? 1 : Math.exp(sigma * this.normal() - (sigma * sigma) / 2)
  }
}
