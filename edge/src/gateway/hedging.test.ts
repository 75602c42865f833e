import { describe, expect, it, vi } from 'vitest'
import { HedgeBudget, hedgeAfterMs, hedgeBudgetFromEnv } from './hedging.js'
import { ClassRoundTrips } from './round-trips.js'

describe('hedgeAfterMs (when a job is hedged)', () => {
  const tripsOf = (...ms: number[]) => {
    const trips = new ClassRoundTrips()
    for (const roundTripMs of ms) trips.add(roundTripMs, 0)
    return trips
  }

  it('says nothing until eight round trips are measured', () => {
    expect(hedgeAfterMs(undefined)).toBeUndefined()
    expect(hedgeAfterMs(tripsOf(10, 10, 10, 10, 10, 10, 10))).toBeUndefined()
    expect(hedgeAfterMs(tripsOf(10, 10, 10, 10, 10, 10, 10, 10))).toBe(20)
  })

  it('is twice the p95 by nearest rank, compared as numbers', () => {
    // Out of order, and with values that sort differently as strings (9 > 10 > 100).
    const trips = tripsOf(100, 9, 10, 55, 7, 8, 1_000, 12, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23)
    // 20 samples: the p95 is the 19th smallest, i.e. the second largest.
    expect(hedgeAfterMs(trips)).toBe(200)
  })

  it('forgets all but the last 32, so a device that got faster is hedged sooner', () => {
    const trips = tripsOf(...Array<number>(32).fill(500))
    expect(hedgeAfterMs(trips)).toBe(1_000)
    for (let i = 0; i < 31; i++) trips.add(20, 0)
    // One slow sample left: the p95 of 32 is the second largest.
    expect(hedgeAfterMs(trips)).toBe(40)
  })
})

describe('HedgeBudget', () => {
  it('allows a burst of ten, then one hedge per twenty jobs', () => {
    const budget = new HedgeBudget(0.05)
    let burst = 0
    while (budget.take()) burst++
    expect(burst).toBe(10)
    let hedges = 0
    for (let job = 0; job < 2_000; job++) {
      budget.jobDispatched()
      if (budget.take()) hedges++
    }
    expect(hedges).toBeGreaterThanOrEqual(99)
    expect(hedges).toBeLessThanOrEqual(100)
  })

  it('saves up no more than the burst over a quiet spell', () => {
    const budget = new HedgeBudget(0.05)
    for (let job = 0; job < 10_000; job++) budget.jobDispatched()
    let hedges = 0
    while (budget.take()) hedges++
    expect(hedges).toBe(10)
  })
})

describe('hedgeBudgetFromEnv', () => {
  it('turns hedging off at HEDGE_RATE 0, and takes an invalid value as the default', () => {
    expect(hedgeBudgetFromEnv({ HEDGE_RATE: '0' }).take()).toBe(false)
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {})
    try {
      const budget = hedgeBudgetFromEnv({ HEDGE_RATE: '5%' })
      expect(warn).toHaveBeenCalledWith(expect.stringContaining('HEDGE_RATE="5%"'))
      expect(budget.take()).toBe(true)
    } finally {
      warn.mockRestore()
    }
  })
})
