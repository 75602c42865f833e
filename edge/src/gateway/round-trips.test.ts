import { describe, expect, it } from 'vitest'
import { hedgeAfterMs } from './hedging.js'
import { FleetRoundTrips, jobClassOf, RoundTrips } from './round-trips.js'

describe('RoundTrips (one device, per kind of job)', () => {
  it('keeps a slow model or a large input from setting what a fast one takes or when it is hedged, and the other way round', () => {
    const trips = new RoundTrips()
    const classifier = jobClassOf('c1a55', 3 * 48 * 192 * 4)
    const detectorSmall = jobClassOf('de7ec7', 3 * 64 * 64 * 4)
    const detectorLarge = jobClassOf('de7ec7', 3 * 640 * 640 * 4)
    expect(new Set([classifier, detectorSmall, detectorLarge]).size).toBe(3)
    // Inputs within a factor of two share a class.
    expect(jobClassOf('de7ec7', 3 * 640 * 640 * 4 - 1_000)).toBe(detectorLarge)
    for (let i = 0; i < 30; i++) trips.add(classifier, 3, i)
    for (let i = 0; i < 10; i++) trips.add(detectorLarge, 500, 100 + i)
    expect(trips.of(classifier)?.ewmaMs).toBeCloseTo(3, 9)
    expect(trips.of(detectorLarge)?.ewmaMs).toBeCloseTo(500, 9)
    expect(trips.of(detectorLarge)?.lastAt).toBe(109)
    expect(hedgeAfterMs(trips.of(classifier))).toBe(6)
    expect(hedgeAfterMs(trips.of(detectorLarge))).toBe(1_000)
    // Never measured: nothing is known (the scheduler guesses, the job is not hedged).
    expect(trips.of(detectorSmall)).toBeUndefined()
  })

  it('weighs the newest round trip 0.2 in its EWMA', () => {
    const trips = new RoundTrips()
    trips.add('k', 100, 0)
    trips.add('k', 200, 1)
    expect(trips.of('k')?.ewmaMs).toBeCloseTo(120, 9)
    trips.add('k', 50, 2)
    expect(trips.of('k')?.ewmaMs).toBeCloseTo(106, 9)
  })

  it('lets a faster second answer replace a (cold) first one instead of averaging with it', () => {
    const trips = new RoundTrips()
    trips.add('det', 1_465, 0) // a first detector run on the audit's agents: 5x a warm one
    trips.add('det', 280, 1)
    expect(trips.of('det')?.ewmaMs).toBe(280)
    trips.add('det', 1_400, 2) // from the third on, averaged as usual
    expect(trips.of('det')?.ewmaMs).toBeCloseTo(504, 9)
  })

  it('keeps the 64 classes measured most recently', () => {
    const trips = new RoundTrips()
    for (let i = 0; i < 8; i++) trips.add('kept', 7, 0)
    for (let c = 0; c < 63; c++) for (let i = 0; i < 8; i++) trips.add(`c${c}`, 1, 0)
    // 'kept' is the oldest of 64; measuring it again makes it the newest.
    trips.add('kept', 7, 0)
    trips.add('c-new', 1, 0)
    expect(hedgeAfterMs(trips.of('kept'))).toBe(14)
    expect(trips.of('c0')).toBeUndefined()
    expect([...trips.classes()]).toHaveLength(64)
  })
})

describe('FleetRoundTrips (every device, per kind of job)', () => {
  it('knows the fastest round trip per kind, and of any kind for one never measured', () => {
    const fleet = new FleetRoundTrips(100)
    expect(fleet.fastestMs('det')).toBe(100)
    expect(fleet.fastestMs()).toBe(100)
    fleet.add('det', 400)
    fleet.add('cls', 4)
    fleet.add('det', 350)
    expect(fleet.fastestMs('det')).toBe(350)
    expect(fleet.fastestMs('cls')).toBe(4)
    expect(fleet.fastestMs('rec')).toBe(4)
    expect(fleet.fastestMs()).toBe(4)
  })

  it('takes the typical round trip as the median of the last block of 64 (at 1, 2, 4, … of the first), and counts each change', () => {
    const fleet = new FleetRoundTrips(100)
    expect(fleet.typicalMs('det')).toBeUndefined()
    fleet.add('det', 500)
    expect(fleet.typicalMs('det')).toBe(500)
    const version = fleet.version
    fleet.add('det', 300)
    // Two: the lower middle one.
    expect(fleet.typicalMs('det')).toBe(300)
    expect(fleet.version).toBeGreaterThan(version)
    fleet.add('det', 9_000) // the third: not summed up until the fourth
    expect(fleet.typicalMs('det')).toBe(300)
    fleet.add('det', 8_000)
    expect(fleet.typicalMs('det')).toBe(500) // median of 300, 500, 8000, 9000 (lower middle)
    for (let i = 4; i < 64; i++) fleet.add('det', 400)
    expect(fleet.typicalMs('det')).toBe(400)
    // The next block replaces it only once full: one slow spell does not move it at each job.
    for (let i = 0; i < 63; i++) fleet.add('det', 2_000)
    expect(fleet.typicalMs('det')).toBe(400)
    fleet.add('det', 2_000)
    expect(fleet.typicalMs('det')).toBe(2_000)
  })
})
