/**
 * mulberry32: a seeded uniform generator in [0, 1) — small, fast, identical on every platform,
 * good enough for test data, sample inputs and Monte Carlo simulation (not for secrets). One
 * copy for the tests, the quantizer's sample inputs and the scheduler simulation.
 */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
