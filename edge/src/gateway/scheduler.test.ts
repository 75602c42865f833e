import { describe, expect, it } from 'vitest'
import { expectedWaitMs, pickDevice } from './scheduler.js'

/** A deterministic uniform generator (mulberry32), so the statistics below are reproducible. */
function seeded(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

describe('pickDevice (power of two choices)', () => {
  it('returns nothing without candidates and the only one when there is one', () => {
    expect(pickDevice([], Math.random)).toBeUndefined()
    const only = { load: 99, ewmaMs: 99 }
    expect(pickDevice([only], Math.random)).toBe(only)
  })

  it('of two devices always takes the one expected to finish first', () => {
    const busyFast = { id: 'busy', load: 4, ewmaMs: 10 } // (4+1)×10 = 50 ms
    const idleSlow = { id: 'idle', load: 0, ewmaMs: 30 } // (0+1)×30 = 30 ms
    const random = seeded(1)
    for (let i = 0; i < 100; i++) expect(pickDevice([busyFast, idleSlow], random)!.id).toBe('idle')
    expect(expectedWaitMs(busyFast)).toBe(50)
  })

  it('never picks the worst device and favours the best among many', () => {
    const devices = Array.from({ length: 10 }, (_, i) => ({ id: i, load: i, ewmaMs: 10 }))
    const random = seeded(42)
    const counts = new Array(10).fill(0)
    for (let i = 0; i < 10_000; i++) counts[pickDevice(devices, random)!.id]++
    expect(counts[9]).toBe(0) // the worst one can only lose a comparison
    // With two uniform samples, device k wins with probability 2(9-k)/90.
    expect(counts[0] / 10_000).toBeCloseTo(18 / 90, 1)
    for (let k = 1; k < 10; k++) expect(counts[k - 1]).toBeGreaterThan(counts[k])
  })

  it('compares two distinct devices, never one against itself', () => {
    const a = { id: 'a', load: 0, ewmaMs: 1 }
    const b = { id: 'b', load: 100, ewmaMs: 100 }
    // random() = 0 for both draws would pick index 0 twice without the distinctness shift.
    expect(pickDevice([b, a], () => 0)!.id).toBe('a')
  })
})
