/**
 * The placement policies compared by the simulation. All but the oracle see only what a gateway
 * sees (its DeviceTable: own in-flight counts, others' load from stale heartbeats, round-trip
 * EWMAs, suspects) and choose among the same candidates the gateway would offer (online, not
 * suspect, not yet tried for this job). "ours" is the edge's real `pickDevice`, imported, not
 * copied.
 */
import { pickDevice } from '../../edge/src/gateway/scheduler.js'
import type { DeviceEntry, DeviceTable } from '../../edge/src/gateway/device-table.js'

/**
 * One device as a scheduling candidate of one gateway: what gateway.ts asks the DeviceTable at
 * pick time, `table.expectedWaitMs(entry, jobClass)` for each job class (model), and what the
 * least-loaded baseline goes by, `table.load(entry)`; kept per device rather than computed for
 * every job. They change with the
 * entry, with the fleet's figures (`table.estimatesVersion`) and, for a stale figure, at
 * `table.estimatesChangeAt(entry)`; the engine calls `sync` after each of those, so the fields
 * hold exactly what gateway.ts would compute (self-check.ts checks this on every pick). Plain
 * fields, not getters: the global minimum reads them ~10^9 times.
 */
export class Candidate {
  load = 0
  /** Per model (its index in SimConfig.models). */
  readonly waitMs: Float64Array
  /** When `waitMs` next changes with time alone. */
  changesAt = Number.POSITIVE_INFINITY

  constructor(
    readonly index: number,
    readonly entry: DeviceEntry,
    readonly table: DeviceTable,
    readonly jobClasses: readonly string[],
  ) {
    this.waitMs = new Float64Array(jobClasses.length)
    this.sync()
  }

  sync(): void {
    this.load = this.table.load(this.entry)
    for (let m = 0; m < this.jobClasses.length; m++) this.waitMs[m] = this.table.expectedWaitMs(this.entry, this.jobClasses[m]!)
    this.changesAt = this.table.estimatesChangeAt(this.entry)
  }
}

/** The true state of the fleet, which only the oracle may read. */
export interface World {
  readonly now: number
  readonly up: Uint8Array
  /** True mean service time right now (base × throttling factor), ms. */
  readonly serviceMs: Float64Array
  /** Bumped whenever `serviceMs` changes (a throttling spell starts or ends). */
  readonly serviceVersion: number
  /** True mean one-way delay, ms. */
  readonly netMs: Float64Array
  /** End of the job running on each device, or -Infinity when idle. */
  readonly runningEnd: Float64Array
  /**
   * Work sent to each device and not yet started (queued there or still on the way), in units
   * of the device's service time: the sum of those jobs' model service factors.
   */
  readonly backlogUnits: Float64Array
}

export interface PickContext {
  readonly candidates: readonly Candidate[]
  /** Devices this job was already sent to (the gateway never retries on the same one). */
  readonly tried: readonly number[]
  /** The job's model (index into SimConfig.models and Candidate.waitMs). */
  readonly model: number
  /** The job's model's service factor (SimModel.serviceFactor): what the oracle knows it costs. */
  readonly serviceFactor: number
  readonly world: World
}

export interface Policy {
  /** The chosen device's index, or -1 when there is none. */
  pick(context: PickContext): number
}

/** A fresh policy for one gateway; `random` is the run's seeded generator. */
export type PolicyFactory = (random: () => number) => Policy

const uniform: PolicyFactory = (random) => ({
  pick: ({ candidates }) => (candidates.length === 0 ? -1 : candidates[Math.floor(random() * candidates.length)]!.index),
})

/** Cycles through the candidate list; the list changes as devices come and go, the counter does not. */
const roundRobin: PolicyFactory = () => {
  let next = 0
  return {
    pick: ({ candidates }) => (candidates.length === 0 ? -1 : candidates[next++ % candidates.length]!.index),
  }
}

/** Global minimum of the gateway's best-known load (jobs, speed ignored); ties broken at random. */
const leastLoaded: PolicyFactory = (random) => {
  let ties = new Int32Array(1024)
  return {
    pick: ({ candidates }) => {
      if (candidates.length > ties.length) ties = new Int32Array(candidates.length)
      let best = Infinity
      let count = 0
      for (let i = 0; i < candidates.length; i++) {
        const load = candidates[i]!.load
        if (load < best) {
          best = load
          count = 0
        }
        if (load === best) ties[count++] = i
      }
      return count === 0 ? -1 : candidates[ties[Math.floor(random() * count)]!]!.index
    },
  }
}

/** The edge's scheduler, as gateway.ts calls it. */
const ours: PolicyFactory = (random) => ({
  pick: ({ candidates, model }) => pickDevice(candidates, (c) => c.waitMs[model]!, random)?.index ?? -1,
})

/**
 * Knows every device's true speed (throttling included), true backlog, the remaining time of the
 * job it is running, its network distance, whether it is really up and what each model costs
 * (not the slower first run after a restart, coldStartFactor); sends each job where it
 * is expected to finish first (greedy earliest completion, the usual yardstick for dispatching).
 * A yardstick, not a proven lower bound: greedy keeps short queues on the fastest devices, and
 * when a throttling spell or an outage then hits one, every job queued there pays (with
 * `--seed 1`, ours — a gateway-side global minimum — beats it at p99).
 */
const oracle: PolicyFactory = () => {
  // Devices in ascending order of their best case for a job of one service factor, an idle
  // device's 2 × delay + service × factor: the scan stops at the first device whose best case
  // cannot beat the best found (about half the fleet at 75 % load, as the fast devices are kept
  // busy) instead of visiting all of it. One order per factor (one per model).
  const orders = new Map<number, { order: Int32Array; best: Float64Array; version: number }>()
  return {
    pick: ({ tried, serviceFactor, world }) => {
      const { now, up, serviceMs, netMs, runningEnd, backlogUnits } = world
      let sorted = orders.get(serviceFactor)
      if (sorted?.version !== world.serviceVersion || sorted.order.length !== up.length) {
        const best = Float64Array.from(serviceMs, (service, i) => service * serviceFactor + 2 * netMs[i]!)
        const order = Int32Array.from(best.keys()).sort((a, b) => best[a]! - best[b]! || a - b)
        sorted = { order, best, version: world.serviceVersion }
        orders.set(serviceFactor, sorted)
      }
      const { order, best } = sorted
      let chosen = -1
      let chosenAt = Infinity
      for (let k = 0; k < order.length; k++) {
        const i = order[k]!
        if (now + best[i]! >= chosenAt) break
        if (up[i] === 0 || tried.includes(i)) continue
        const service = serviceMs[i]!
        const net = netMs[i]!
        const freeAt = Math.max(now, runningEnd[i]!) + backlogUnits[i]! * service
        const doneAt = Math.max(now + net, freeAt) + service * serviceFactor + net
        if (doneAt < chosenAt) {
          chosenAt = doneAt
          chosen = i
        }
      }
      return chosen
    },
  }
}

/**
 * Power of d choices on the same cost, DeviceTable.expectedWaitMs: d distinct candidates sampled at
 * random, the first best kept. Experimental baselines only (`--policies`), never used by the
 * edge. `p2c` is pickDevice as it was before the global minimum (same distribution: two distinct
 * uniform samples, ties to the first), the baseline the scheduler's doc comment compares with.
 */
function powerOfD(d: number): PolicyFactory {
  const drawn = new Int32Array(d)
  return (random) => ({
    pick: ({ candidates, model }) => {
      const n = candidates.length
      if (n === 0) return -1
      let best: Candidate | undefined
      let bestWait = Infinity
      for (let k = 0; k < Math.min(d, n); k++) {
        let i = Math.floor(random() * n)
        for (let j = 0; j < k; j++) {
          if (drawn[j] === i) {
            i = Math.floor(random() * n) // drawn already: draw again and recheck all
            j = -1
          }
        }
        drawn[k] = i
        const candidate = candidates[i]!
        const wait = candidate.waitMs[model]!
        // The first drawn stands even at an infinite wait (a device sent a job, not yet measured).
        if (best === undefined || wait < bestWait) {
          best = candidate
          bestWait = wait
        }
      }
      return best!.index
    },
  })
}

export const POLICIES: Readonly<Record<string, PolicyFactory>> = {
  random: uniform,
  'round-robin': roundRobin,
  'least-loaded': leastLoaded,
  ours,
  oracle,
  p2c: powerOfD(2),
  p8c: powerOfD(8),
}

/** The policies of the default run: the five compared, and the previous scheduler as a baseline. */
export const DEFAULT_POLICIES = ['random', 'round-robin', 'least-loaded', 'ours', 'oracle', 'p2c'] as const
