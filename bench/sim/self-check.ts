/**
 * `npx tsx bench/sim/self-check.ts` — checks of the simulation engine itself. They live here
 * rather than in a *.test.ts because the root vitest.config.ts does not include bench/.
 * Exits non-zero on the first failure.
 */
import assert from 'node:assert/strict'
import { PROTOCOL_VERSION } from '@depinfer/shared'
import { runSimulation } from './engine.js'
import { EventHeap } from './heap.js'
import { buildArrivals, buildFleet, DEFAULT_CONFIG, type SimConfig } from './model.js'
import { DeviceTable } from '../../edge/src/gateway/device-table.js'
import { Candidate, POLICIES, type PolicyFactory, type World } from './policies.js'
import { percentile } from './stats.js'
import { deriveSeed, Rng } from './rng.js'

function check(name: string, body: () => void): void {
  body()
  console.log(`ok - ${name}`)
}

check('the heap pops in time order, ties in insertion order', () => {
  const heap = new EventHeap<number>()
  const rng = new Rng(7)
  const pushed: Array<{ time: number; id: number }> = []
  for (let id = 0; id < 5000; id++) {
    const time = Math.floor(rng.next() * 100) // many equal times
    heap.push(time, id)
    pushed.push({ time, id })
  }
  const expected = pushed.sort((a, b) => a.time - b.time || a.id - b.id).map((e) => e.id)
  const popped: number[] = []
  for (let value = heap.pop(); value !== undefined; value = heap.pop()) popped.push(value)
  assert.deepEqual(popped, expected)
  assert.equal(heap.peekTime(), Infinity)
})

check('the generator is deterministic per seed and streams differ', () => {
  const draw = (seed: number) => Array.from({ length: 100 }, ((rng) => () => rng.next())(new Rng(seed)))
  assert.deepEqual(draw(42), draw(42))
  assert.notDeepEqual(draw(deriveSeed(42, 1)), draw(deriveSeed(42, 2)))
  const rng = new Rng(1)
  let sum = 0
  for (let i = 0; i < 100_000; i++) sum += rng.exp(10)
  assert.ok(Math.abs(sum / 100_000 - 10) < 0.2, `exp mean ${sum / 100_000}`)
  let noise = 0
  for (let i = 0; i < 100_000; i++) noise += rng.noise(0.3)
  assert.ok(Math.abs(noise / 100_000 - 1) < 0.01, `noise mean ${noise / 100_000}`)
})

const tiny: SimConfig = { ...DEFAULT_CONFIG, devices: 50, jobs: 20_000, warmupMs: 2_000 }
const fleet = buildFleet(tiny)
const arrivals = buildArrivals(tiny, fleet.capacityPerMs)
const p99 = (policy: string) => {
  const { latencies } = runSimulation(tiny, fleet, arrivals, policy, POLICIES[policy]!)
  return percentile(latencies.slice().sort(), 0.99)
}

check('arrivals run at the requested load', () => {
  const spanMs = arrivals.times[arrivals.times.length - 1]!
  const offered = arrivals.times.length / spanMs / fleet.capacityPerMs
  assert.ok(Math.abs(offered - tiny.load) < 0.05, `offered load ${offered}`)
})

check('a run is reproducible: same seed, same latencies', () => {
  const once = runSimulation(tiny, fleet, arrivals, 'ours', POLICIES.ours!).latencies
  const again = runSimulation(tiny, fleet, arrivals, 'ours', POLICIES.ours!).latencies
  assert.deepEqual(once, again)
})

check('the oracle is at least as good as random on a small fleet', () => {
  const oracle = p99('oracle')
  const random = p99('random')
  assert.ok(oracle <= random, `oracle p99 ${oracle} ms, random ${random} ms`)
})

for (const [what, config] of [
  ['one model', { ...tiny, jobs: 5_000 }],
  // Long enough (~45 s simulated) for stale figures to halve, with two job classes and cold starts.
  ['two models, cold starts', { ...tiny, jobs: 20_000, models: [{ share: 0.9, serviceFactor: 1 }, { share: 0.1, serviceFactor: 10 }], coldStartFactor: 3 }],
] as const) {
  check(`candidates carry exactly what gateway.ts would read from the DeviceTable (${what})`, () => {
    // Wraps the real scheduler: at every pick, each candidate's fields must equal what the table
    // says at that moment: `table.expectedWaitMs(entry, class)`, what gateway.ts asks, and
    // `table.load(entry)`, what least-loaded reads.
    let picks = 0
    let halved = 0
    const checked: PolicyFactory = (random) => {
      const inner = POLICIES.ours!(random)
      return {
        pick: (context) => {
          for (const c of context.candidates) {
            assert.equal(c.load, c.table.load(c.entry), `load of device ${c.index}`)
            c.jobClasses.forEach((jobClass, m) => assert.equal(c.waitMs[m], c.table.expectedWaitMs(c.entry, jobClass), `wait on device ${c.index} for ${jobClass}`))
            if (c.changesAt < Infinity) halved++
          }
          picks++
          return inner.pick(context)
        },
      }
    }
    const small: SimConfig = { ...config, models: [...config.models] }
    const smallFleet = buildFleet(small)
    const checkedRun = runSimulation(small, smallFleet, buildArrivals(small, smallFleet.capacityPerMs), 'ours', checked)
    const plainRun = runSimulation(small, smallFleet, buildArrivals(small, smallFleet.capacityPerMs), 'ours', POLICIES.ours!)
    assert.ok(picks >= small.jobs, `${picks} picks`)
    if (small.models.length > 1) assert.ok(halved > 0, 'no stale figure was ever halved: the check did not cover it')
    assert.deepEqual(checkedRun.latencies, plainRun.latencies)
  })
}

check('p2c samples two distinct candidates and keeps the better (ties to the first)', () => {
  const world = undefined as unknown as World // p2c never reads the true state
  const table = new DeviceTable(() => 0)
  const make = (index: number, inflight: number) => {
    const entry = table.applyStatus({ protocol: PROTOCOL_VERSION, deviceId: `d${index}`, online: true, models: [] })
    table.recordSuccess(entry, 100, 'm0')
    for (let i = 0; i < inflight; i++) table.jobSent(entry, 'm0')
    return new Candidate(index, entry, table, ['m0'])
  }
  // Equal EWMAs (100 ms): the cost is the load alone.
  const candidates = [make(0, 2), make(1, 0), make(2, 1)]
  const draws = [0.1, 0.5] // candidate 0, then candidate 1
  const p2c = POLICIES.p2c!(() => draws.shift() ?? 0)
  assert.equal(p2c.pick({ candidates, tried: [], model: 0, serviceFactor: 1, world }), 1)
  // A repeated draw is drawn again: 0.1 → 0, 0.2 → 0 again, 0.9 → 2.
  const repeat = [0.1, 0.2, 0.9]
  assert.equal(POLICIES.p2c!(() => repeat.shift() ?? 0).pick({ candidates, tried: [], model: 0, serviceFactor: 1, world }), 2)
  assert.equal(POLICIES.p2c!(() => 0).pick({ candidates: [candidates[0]!], tried: [], model: 0, serviceFactor: 1, world }), 0)
})
