import { describe, expect, it, vi } from 'vitest'
import { HedgeBudget, hedgeBudgetFromEnv, jobClassOf, RoundTripWindow, RoundTripWindows } from './hedging.js'

describe('RoundTripWindow (when a job is hedged)', () => {
  it('says nothing until eight round trips are measured', () => {
    const window = new RoundTripWindow()
    for (let i = 0; i < 7; i++) window.add(10)
    expect(window.hedgeAfterMs()).toBeUndefined()
    window.add(10)
    expect(window.hedgeAfterMs()).toBe(20)
  })

  it('is twice the p95 by nearest rank, compared as numbers', () => {
    const window = new RoundTripWindow()
    // Out of order, and with values that sort differently as strings (9 > 10 > 100).
    for (const ms of [100, 9, 10, 55, 7, 8, 1_000, 12, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23]) window.add(ms)
    // 20 samples: the p95 is the 19th smallest, i.e. the second largest.
    expect(window.hedgeAfterMs()).toBe(200)
  })

  it('forgets all but the last 32, so a device that got faster is hedged sooner', () => {
    const window = new RoundTripWindow()
    for (let i = 0; i < 32; i++) window.add(500)
    expect(window.hedgeAfterMs()).toBe(1_000)
    for (let i = 0; i < 31; i++) window.add(20)
    // One slow sample left: the p95 of 32 is the second largest.
    expect(window.hedgeAfterMs()).toBe(40)
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

describe('RoundTripWindows (per kind of job)', () => {
  it('keeps a slow model or a large input from setting when a fast one is hedged, and the other way round', () => {
    const windows = new RoundTripWindows()
    const classifier = jobClassOf('c1a55', 3 * 48 * 192 * 4)
    const detectorSmall = jobClassOf('de7ec7', 3 * 64 * 64 * 4)
    const detectorLarge = jobClassOf('de7ec7', 3 * 640 * 640 * 4)
    expect(new Set([classifier, detectorSmall, detectorLarge]).size).toBe(3)
    // Inputs within a factor of two share a class.
    expect(jobClassOf('de7ec7', 3 * 640 * 640 * 4 - 1_000)).toBe(detectorLarge)
    for (let i = 0; i < 30; i++) windows.add(classifier, 3)
    for (let i = 0; i < 10; i++) windows.add(detectorLarge, 500)
    expect(windows.hedgeAfterMs(classifier)).toBe(6)
    expect(windows.hedgeAfterMs(detectorLarge)).toBe(1_000)
    // Never measured: not hedged (the half-deadline retry still covers it).
    expect(windows.hedgeAfterMs(detectorSmall)).toBeUndefined()
  })

  it('keeps the 64 classes measured most recently', () => {
    const windows = new RoundTripWindows()
    for (let i = 0; i < 8; i++) windows.add('kept', 7)
    for (let c = 0; c < 63; c++) for (let i = 0; i < 8; i++) windows.add(`c${c}`, 1)
    // 'kept' is the oldest of 64; measuring it again makes it the newest.
    windows.add('kept', 7)
    windows.add('c-new', 1)
    expect(windows.hedgeAfterMs('kept')).toBe(14)
    expect(windows.hedgeAfterMs('c0')).toBeUndefined()
  })
})
