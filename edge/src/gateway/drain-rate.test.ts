import { describe, expect, it } from 'vitest'
import { DrainRate, MIN_DRAIN_ANSWERS } from './drain-rate.js'

describe('DrainRate', () => {
  it('is unknown before MIN_DRAIN_ANSWERS answers, then the busy time per answer', () => {
    const drain = new DrainRate()
    let now = 1_000
    for (let i = 0; i < MIN_DRAIN_ANSWERS; i++) {
      expect(drain.perJobMs).toBeUndefined()
      drain.sent(now, 0)
      now += 40
      drain.answered(now)
      // Idle between jobs: not the device's pace.
      now += 5_000
    }
    expect(drain.perJobMs).toBeCloseTo(40, 9)
  })

  it('counts a batch answered at once as its run shared out: eight jobs in 200 ms drain at 25 ms each', () => {
    const drain = new DrainRate()
    let now = 0
    for (let batch = 0; batch < 10; batch++) {
      // Eight jobs out while the device is busy with the previous batch.
      for (let i = 0; i < 8; i++) drain.sent(now, batch === 0 && i === 0 ? 0 : 1)
      now += 200
      for (let i = 0; i < 8; i++) drain.answered(now)
    }
    // The first batch started the clock; each later one took 200 ms of busy time for 8 answers.
    expect(drain.perJobMs).toBeCloseTo(25, 9)
  })

  it('follows a device that slows down, over about its last 32 answers', () => {
    const drain = new DrainRate()
    let now = 0
    drain.sent(now, 0)
    for (let i = 0; i < 100; i++) drain.answered((now += 10))
    expect(drain.perJobMs).toBeCloseTo(10, 6)
    for (let i = 0; i < 100; i++) drain.answered((now += 100))
    expect(drain.perJobMs).toBeGreaterThan(95)
  })
})
