import { describe, expect, it } from 'vitest'
import { backoffMs } from './backoff.js'

describe('back-off', () => {
  it('doubles its range each attempt, is capped, and never goes below the minimum', () => {
    const top = (attempt: number) => backoffMs(attempt, 250, 15_000, () => 0.999999)
    expect(top(0)).toBe(499)
    expect(top(3)).toBe(3_999)
    expect(top(20)).toBe(14_999)
    expect(backoffMs(0, 250, 15_000, () => 0)).toBe(250)
    expect(backoffMs(5, 250, 15_000, () => 0)).toBe(250)
    expect(backoffMs(3, 1_000, 1_000, () => 0.5)).toBe(1_000)
  })

  it('spreads a fleet out, from the first attempt on: retries at the same step do not land together', () => {
    for (const attempt of [0, 6]) {
      const delays = new Set(Array.from({ length: 50 }, () => backoffMs(attempt, 250, 15_000)))
      expect(delays.size).toBeGreaterThan(40)
    }
  })
})
