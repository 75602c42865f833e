/**
 * Picks a device for a job: power of two choices (Mitzenmacher) on the expected wait,
 * `(load + 1) × ewmaMs`. Sampling two candidates at random and keeping the better one avoids the
 * herd behaviour of always choosing the global least-loaded device when load reports are stale,
 * while staying close to it in tail latency.
 */

export interface SchedulingCandidate {
  /** Jobs this device is running or has queued, as best known. */
  load: number
  /** Recent mean service time on this device, in milliseconds. */
  ewmaMs: number
}

/** Expected time until a new job would finish on this device, in milliseconds. */
export const expectedWaitMs = (candidate: SchedulingCandidate) =>
  (candidate.load + 1) * candidate.ewmaMs

/**
 * Chooses one of `candidates`, or undefined when there are none.
 * `random` returns a float in [0, 1); pass a seeded one for reproducible simulations.
 *
 * @example
 * pickDevice([{ load: 3, ewmaMs: 10 }, { load: 0, ewmaMs: 20 }], Math.random) // the second
 */
export function pickDevice<T extends SchedulingCandidate>(
  candidates: readonly T[],
  random: () => number,
): T | undefined {
  if (candidates.length <= 1) return candidates[0]
  const first = Math.floor(random() * candidates.length)
  let second = Math.floor(random() * (candidates.length - 1))
  if (second >= first) second++
  const a = candidates[first]!
  const b = candidates[second]!
  return expectedWaitMs(b) < expectedWaitMs(a) ? b : a
}
