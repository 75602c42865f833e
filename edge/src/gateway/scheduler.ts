/**
 * Picks a device for a job: the one expected to finish it first, `(load + 1) × ewmaMs`, ties
 * broken at random.
 *
 * Why not power of two choices (Mitzenmacher), which this used to be: on a fleet whose speeds
 * spread 10x, two random samples are often both slow devices, and the job queues on one while
 * fast ones idle. The discrete-event simulation of 1,000 heterogeneous devices
 * (`npm run bench:scheduler`) measured p99 at 4.6x an oracle that knows true speeds with two
 * choices, 1.32x with eight, and 1.08x for the global minimum. The herding that power of two
 * choices guards against comes from stale load reports; the device table counts this gateway's
 * own in-flight jobs exactly (device-table.ts `load`), so every job it places is seen by the
 * next decision. The cost is one pass over the candidates, which the catalog lookup makes anyway.
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
 * Chooses one of `candidates`, or undefined when there are none. `random` returns a float in
 * [0, 1) and breaks ties (uniformly, by reservoir sampling); pass a seeded one for reproducible
 * simulations.
 *
 * @example
 * pickDevice([{ load: 3, ewmaMs: 10 }, { load: 0, ewmaMs: 20 }], Math.random) // the second
 */
export function pickDevice<T extends SchedulingCandidate>(
  candidates: readonly T[],
  random: () => number,
): T | undefined {
  let best: T | undefined
  let bestWait = Number.POSITIVE_INFINITY
  let ties = 0
  for (const candidate of candidates) {
    const wait = expectedWaitMs(candidate)
    if (wait < bestWait) {
      best = candidate
      bestWait = wait
      ties = 1
    } else if (wait === bestWait && random() * ++ties < 1) {
      best = candidate
    }
  }
  return best
}
