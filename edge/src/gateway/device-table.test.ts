import { describe, expect, it } from 'vitest'
import { PROTOCOL_VERSION } from '@depinfer/shared'
import { DeviceTable, REFUTED_SUSPECT_MAX_MS, REFUTED_SUSPECT_MS, SUSPECT_FOR_MS } from './device-table.js'

describe('DeviceTable suspicion', () => {
  let now = 1_000_000
  const table = new DeviceTable(() => now)
  const device = (deviceId: string) => table.applyStatus({ protocol: PROTOCOL_VERSION, deviceId, online: true, models: [] })

  it('leaves a device a spot check refuted out far longer than after a bad attestation, doubling each time, capped', () => {
    const liar = device('liar')
    table.recordBadAttestation(liar)
    expect(liar.suspectUntil).toBe(now + SUSPECT_FOR_MS)
    table.recordRefuted(liar)
    expect(liar.suspectUntil).toBe(now + REFUTED_SUSPECT_MS)
    now = liar.suspectUntil
    expect(table.isSuspect(liar)).toBe(false)
    table.recordRefuted(liar)
    expect(liar.suspectUntil).toBe(now + 2 * REFUTED_SUSPECT_MS)
    for (let i = 0; i < 40; i++) table.recordRefuted(liar)
    expect(liar.suspectUntil).toBe(now + REFUTED_SUSPECT_MAX_MS)
  })

  it('does not let a late answer clear a refutation (only failures are forgiven)', () => {
    const liar = device('late-liar')
    table.recordRefuted(liar)
    table.recordLateAnswer(liar, 50)
    expect(table.isSuspect(liar)).toBe(true)
    const slow = device('slow')
    for (let i = 0; i < 3; i++) table.recordFailure(slow)
    expect(table.isSuspect(slow)).toBe(true)
    table.recordLateAnswer(slow, 5_000)
    expect(table.isSuspect(slow)).toBe(false)
  })

  it('keeps the refutation when the device goes offline and comes back', () => {
    const liar = device('returning-liar')
    table.recordRefuted(liar)
    table.applyStatus({ protocol: PROTOCOL_VERSION, deviceId: 'returning-liar', online: false, models: [] })
    const back = device('returning-liar')
    expect(table.isSuspect(back)).toBe(true)
  })
})
