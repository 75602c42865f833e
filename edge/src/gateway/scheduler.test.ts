import { seededRandom } from '@depinfer/shared'
import { describe, expect, it } from 'vitest'
import { expectedWaitMs, pickDevice } from './scheduler.js'

describe('pickDevice (least expected completion time)', () => {
  it('returns nothing without candidates and the only one when there is one', () => {
    expect(pickDevice([], Math.random)).toBeUndefined()
    const only = { load: 99, ewmaMs: 99 }
    expect(pickDevice([only], Math.random)).toBe(only)
  })

  it('takes the device expected to finish first, not the least loaded nor the fastest', () => {
    const busyFast = { id: 'busy-fast', load: 4, ewmaMs: 10 } // (4+1)×10 = 50 ms
    const idleSlow = { id: 'idle-slow', load: 0, ewmaMs: 30 } // (0+1)×30 = 30 ms
    const lightMid = { id: 'light-mid', load: 1, ewmaMs: 14 } // (1+1)×14 = 28 ms
    const random = seededRandom(1)
    for (let i = 0; i < 100; i++) expect(pickDevice([busyFast, idleSlow, lightMid], random)!.id).toBe('light-mid')
    expect(expectedWaitMs(busyFast)).toBe(50)
  })

  it('finds the best among many wherever it is in the list', () => {
    for (let best = 0; best < 50; best++) {
      const devices = Array.from({ length: 50 }, (_, i) => ({ id: i, load: i === best ? 0 : 1 + (i % 7), ewmaMs: 10 }))
      expect(pickDevice(devices, seededRandom(best))!.id).toBe(best)
    }
  })

  it('spreads ties evenly, so equal idle devices share the work', () => {
    const devices = Array.from({ length: 4 }, (_, i) => ({ id: i, load: 0, ewmaMs: 10 }))
    const counts = [0, 0, 0, 0]
    const random = seededRandom(7)
    for (let i = 0; i < 8_000; i++) {
      const { id } = pickDevice(devices, random)!
      counts[id] = counts[id]! + 1
    }
    for (const count of counts) expect(count / 8_000).toBeCloseTo(0.25, 1)
  })
})
