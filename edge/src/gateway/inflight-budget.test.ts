import { describe, expect, it } from 'vitest'
import { CallerBusyError, GatewayBusyError } from '../errors/routing.js'
import { InflightBudget, inflightBudgetFromEnv, DEFAULT_MAX_INFLIGHT_BYTES } from './inflight-budget.js'

describe('InflightBudget', () => {
  it("holds a caller to half the limit and everyone to the limit; a release makes room, once", () => {
    const budget = new InflightBudget(1_000)
    const a1 = budget.admit('a', 400)
    expect(() => budget.admit('a', 101)).toThrow(CallerBusyError)
    const a2 = budget.admit('a', 100)
    const b1 = budget.admit('b', 500)
    expect(budget.bytesInFlight).toBe(1_000)
    expect(() => budget.admit('c', 1)).toThrow(GatewayBusyError)
    a1()
    a1()
    expect(budget.bytesInFlight).toBe(600)
    budget.admit('c', 400)
    expect(() => budget.admit('c', 1)).toThrow(GatewayBusyError)
    b1()
    a2()
    expect(budget.bytesInFlight).toBe(400)
  })

  it('admits a job larger than the limit or the share when nothing else is in flight', () => {
    const budget = new InflightBudget(1_000)
    const big = budget.admit('a', 5_000)
    expect(() => budget.admit('b', 1)).toThrow(GatewayBusyError)
    big()
    budget.admit('b', 700)
    expect(() => budget.admit('b', 1)).toThrow(CallerBusyError)
  })

  it('limits nothing at 0', () => {
    const budget = new InflightBudget(0)
    for (let i = 0; i < 3; i++) budget.admit('a', 1e9)
  })

  it('reads MAX_INFLIGHT_BYTES, and falls back to the default on a bad value', () => {
    expect(inflightBudgetFromEnv({ MAX_INFLIGHT_BYTES: '2048' }).maxBytes).toBe(2_048)
    expect(inflightBudgetFromEnv({}).maxBytes).toBe(DEFAULT_MAX_INFLIGHT_BYTES)
    expect(inflightBudgetFromEnv({ MAX_INFLIGHT_BYTES: 'lots' }).maxBytes).toBe(DEFAULT_MAX_INFLIGHT_BYTES)
  })
})
