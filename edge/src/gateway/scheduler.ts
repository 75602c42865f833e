/**
 * Picks a device for a job: the one expected to finish it first (DeviceTable.expectedWaitMs: the
 * jobs queued there and this one, each at what its kind of job takes there), ties broken at
 * random.
 *
 * Why not power of two choices (Mitzenmacher), which this used to be: on a fleet whose speeds
 * spread 10x, two random samples are often both slow devices, and the job queues on one while
 * fast ones idle. The discrete-event simulation of 1,000 heterogeneous devices
 * (`npm run bench:scheduler`) measured p99 at 4.6x an oracle that knows true speeds with two
 * choices, 1.32x with eight, and 1.08x for the global minimum. The herding that power of two
 * choices guards against comes from stale load reports; the device table counts this gateway's
 * own in-flight jobs exactly (DeviceEntry `inflightByClass`), so every job it places is seen by
 * the next decision. The cost is one pass over the candidates, which the catalog lookup makes anyway.
 */

/**
 * Chooses one of `candidates`, the one with the least `expectedWaitMs` (DeviceTable's: what a
 * job sent there now would take, its queue included), or undefined when there are none.
 * `random` returns a float in [0, 1) and breaks ties (uniformly, by reservoir sampling); pass a
 * seeded one for reproducible simulations.
 *
 * @example
 * pickDevice([{ id: 'a', waitMs: 40 }, { id: 'b', waitMs: 20 }], (d) => d.waitMs, Math.random) // b
 */
export function pickDevice<T>(candidates: readonly T[], expectedWaitMs: (candidate: T) => number, random: () => number): T | undefined {
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
