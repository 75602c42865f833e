/** The reconnect policy: back-off that only a lasting connection resets, and the takeover warning. */
import { describe, expect, it } from 'vitest'
import { ReconnectPolicy } from './connect.js'

/** The top of each back-off range, so a delay shows the attempt it was computed for. */
const highest = () => 0.999999

describe('reconnect policy', () => {
  it('starts over at the minimum after a connection that lasted', () => {
    const policy = new ReconnectPolicy({ minMs: 100, maxMs: 1_000, random: highest })
    expect(policy.closed(0).delayMs).toBe(100) // a failed attempt
    expect(policy.closed(100).delayMs).toBe(199)
    policy.connected(1_000)
    // Up for 2 × maxMs: a broker that restarted, not one dropping us.
    expect(policy.closed(3_000)).toEqual({ delayMs: 100, takeoverSuspected: false, droppedEarly: 0 })
  })

  it('keeps backing off while connections are dropped right after being accepted, and suspects a takeover once', () => {
    const policy = new ReconnectPolicy({ minMs: 100, maxMs: 1_000, random: highest })
    const dropAfter = (now: number, upMs: number) => {
      policy.connected(now)
      return policy.closed(now + upMs)
    }
    expect(dropAfter(0, 50)).toEqual({ delayMs: 100, takeoverSuspected: false, droppedEarly: 1 })
    expect(dropAfter(1_000, 50)).toEqual({ delayMs: 199, takeoverSuspected: false, droppedEarly: 2 })
    expect(dropAfter(2_000, 50)).toEqual({ delayMs: 399, takeoverSuspected: true, droppedEarly: 3 })
    expect(dropAfter(3_000, 50)).toEqual({ delayMs: 799, takeoverSuspected: false, droppedEarly: 4 }) // said once
    expect(dropAfter(4_000, 1_999).delayMs).toBe(999) // capped; still short of 2 × maxMs
    // A connection that lasts ends the streak, and a new streak is reported again.
    expect(dropAfter(10_000, 2_000)).toEqual({ delayMs: 100, takeoverSuspected: false, droppedEarly: 0 })
    expect([dropAfter(20_000, 10), dropAfter(21_000, 10), dropAfter(22_000, 10)].map((r) => r.takeoverSuspected)).toEqual([false, false, true])
  })

  it('does not take an unreachable broker for a takeover', () => {
    const policy = new ReconnectPolicy({ minMs: 100, maxMs: 1_000, takeoverAfter: 2 })
    policy.connected(0)
    expect(policy.closed(10).droppedEarly).toBe(1)
    expect(policy.closed(500).droppedEarly).toBe(0) // refused: not accepted, so not dropped by another client
    policy.connected(1_000)
    expect(policy.closed(1_010)).toMatchObject({ takeoverSuspected: false, droppedEarly: 1 })
  })
})
