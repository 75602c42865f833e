import { seededRandom } from '@depinfer/shared'
import { describe, expect, it } from 'vitest'
import { pickDevice } from './scheduler.js'

const waitOf = (device: { waitMs: number }) => device.waitMs

describe('pickDevice (least expected completion time)', () => {
  it('returns nothing without candidates and the only one when there is one', () => {
    expect(pickDevice([], waitOf, Math.random)).toBeUndefined()
    const only = { waitMs: 99 }
    expect(pickDevice([only], waitOf, Math.random)).toBe(only)
  })

  it('takes the device expected to finish first', () => {
    const devices = [
      { id: 'busy-fast', waitMs: 50 },
      { id: 'idle-slow', waitMs: 30 },
      { id: 'light-mid', waitMs: 28 },
    ]
    const random = seededRandom(1)
    for (let i = 0; i < 100; i++) expect(pickDevice(devices, waitOf, random)!.id).toBe('light-mid')
  })

  it('finds the best among many wherever it is in the list', () => {
    for (let best = 0; best < 50; best++) {
      const devices = Array.from({ length: 50 }, (_, i) => ({ id: i, waitMs: i === best ? 10 : 20 + (i % 7) }))
      expect(pickDevice(devices, waitOf, seededRandom(best))!.id).toBe(best)
    }
  })

  it('spreads ties evenly, so equal idle devices share the work', () => {
    const devices = Array.from({ length: 4 }, (_, i) => ({ id: i, waitMs: 10 }))
    const counts = [0, 0, 0, 0]
    const random = seededRandom(7)
    for (let i = 0; i < 8_000; i++) {
      const { id } = pickDevice(devices, waitOf, random)!
      counts[id] = counts[id]! + 1
    }
    for (const count of counts) expect(count / 8_000).toBeCloseTo(0.25, 1)
  })

  it('still picks one when every device is expected to take forever (each has an unmeasured job out)', () => {
    const devices = Array.from({ length: 3 }, (_, i) => ({ id: i, waitMs: Number.POSITIVE_INFINITY }))
    const seen = new Set<number>()
    const random = seededRandom(3)
    for (let i = 0; i < 100; i++) seen.add(pickDevice(devices, waitOf, random)!.id)
    expect(seen.size).toBe(3)
  })
})
