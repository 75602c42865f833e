import { describe, expect, it } from 'vitest'
import { PROTOCOL_VERSION, type DeviceStatus } from '@depinfer/shared'
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

  it('does not let a bad attestation shorten a refutation', () => {
    const liar = device('liar-with-a-job-left')
    table.recordRefuted(liar)
    const until = liar.suspectUntil
    table.recordBadAttestation(liar)
    expect(liar.suspectUntil).toBe(until)
    expect(liar.suspectFor).toBe('refuted')
  })

  it('does not let a late answer clear a refutation (only failures are forgiven)', () => {
    const liar = device('late-liar')
    table.recordRefuted(liar)
    table.recordLateAnswer(liar, 50, 'cls/10')
    expect(table.isSuspect(liar)).toBe(true)
    const slow = device('slow')
    for (let i = 0; i < 3; i++) table.recordFailure(slow)
    expect(table.isSuspect(slow)).toBe(true)
    table.recordLateAnswer(slow, 5_000, 'cls/10')
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

describe('DeviceTable expected time of a device not measured yet', () => {
  const now = 0
  const status = (deviceId: string): DeviceStatus => ({ protocol: PROTOCOL_VERSION, deviceId, online: true, models: [] })

  it('is optimistic while the device is idle (the fastest round trip seen), so a newcomer gets tried', () => {
    const table = new DeviceTable(() => now)
    const measured = table.applyStatus(status('measured'))
    const newcomer = table.applyStatus(status('newcomer'))
    table.recordSuccess(measured, 30, 'cls/10')
    table.recordSuccess(measured, 50, 'cls/10')
    expect(table.ewmaMs(measured)).toBe(34)
    // Idle and unknown: as fast as the fastest round trip seen (30 ms), ahead of the 34 ms device.
    expect(table.ewmaMs(newcomer)).toBe(30)
    expect(table.unmeasuredEwmaMs).toBe(30)
  })

  it('believes a heartbeat only when it is slower than the fastest round trip seen, and sends an unmeasured device one job at a time', () => {
    const table = new DeviceTable(() => now)
    const fast = table.applyStatus(status('fast'))
    table.recordSuccess(fast, 10, 'cls/10')
    const boaster = table.applyStatus(status('boaster'))
    table.applyHeartbeat('boaster', { inflight: 0, queued: 0, ewmaMs: 0.01, ts: 0 })
    expect(table.ewmaMs(boaster)).toBe(10)
    const slow = table.applyStatus(status('slow'))
    table.applyHeartbeat('slow', { inflight: 0, queued: 0, ewmaMs: 400, ts: 0 })
    expect(table.ewmaMs(slow)).toBe(400)
    // Sent a job, not answered yet: no second one (even if every measured device is slower).
    table.jobSent(slow)
    expect(table.ewmaMs(slow)).toBe(Number.POSITIVE_INFINITY)
    // Its job timed out (or failed): idle again, but no longer guessed fast.
    slow.inflight--
    expect(table.ewmaMs(slow)).toBe(100)
    table.jobSent(slow)
    slow.inflight--
    table.recordSuccess(slow, 380, 'cls/10')
    expect(table.ewmaMs(slow)).toBe(380)
  })

  it('blames a timeout on the device only for a budget of at least 1 s and 4x what it was expected to take', () => {
    const table = new DeviceTable(() => now)
    const device = table.applyStatus(status('d'))
    expect(table.timeoutWouldBeItsFault(device, 999)).toBe(false)
    expect(table.timeoutWouldBeItsFault(device, 1_000)).toBe(true)
    table.recordSuccess(device, 500, 'cls/10')
    device.inflight = 1
    // Expected 2 × 500 ms with one job ahead of it: only a budget of 4 s or more blames it.
    expect(table.timeoutWouldBeItsFault(device, 3_999)).toBe(false)
    expect(table.timeoutWouldBeItsFault(device, 4_000)).toBe(true)
  })
})

describe('DeviceTable forgetting devices gone for long', () => {
  const DAY = 86_400_000
  let now = 0
  const status = (deviceId: string, online = true): DeviceStatus => ({ protocol: PROTOCOL_VERSION, deviceId, online, models: [] })

  it('forgets devices offline or silent since before the cutoff, and keeps the rest', () => {
    const table = new DeviceTable(() => now)
    table.applyStatus(status('left'))
    table.applyStatus(status('silent'))
    table.applyStatus(status('here'))
    table.applyStatus(status('left-recently'))
    table.applyStatus(status('left', false))
    now = DAY
    table.applyStatus(status('left-recently', false))
    table.applyHeartbeat('here', { inflight: 0, queued: 0, ewmaMs: 5, ts: now })
    const revision = table.revision
    expect(table.forgetGoneSince(now - DAY / 2).sort()).toEqual(['left', 'silent'])
    expect(table.revision).toBeGreaterThan(revision)
    expect(table.all().map((entry) => entry.deviceId).sort()).toEqual(['here', 'left-recently'])
    // Back later: added anew from its status.
    expect(table.applyStatus(status('left')).jobsSent).toBe(0)
    expect(table.isOnline(table.get('left')!)).toBe(true)
  })

  it('is not kept by its retained status, offline or online, replayed at each reconnect of the link', () => {
    const table = new DeviceTable(() => now)
    now = 0
    table.applyStatus(status('gone'))
    table.applyStatus(status('gone', false))
    // Vanished without its will being sent: the broker keeps replaying `online: true`.
    table.applyStatus(status('vanished'))
    for (let minutes = 13; minutes <= 3 * 24 * 60; minutes += 13) {
      now = minutes * 60_000
      table.unconfirmAll()
      table.applyStatus(status('gone', false), true)
      table.applyStatus(status('vanished'), true)
    }
    // Right after a replay the vanished device counts as online until it goes stale.
    expect(table.forgetGoneSince(now - DAY)).toEqual(['gone'])
    now += 60_000
    expect(table.forgetGoneSince(now - DAY)).toEqual(['vanished'])
  })

  it('keeps a device it hears from, whatever its retained status says', () => {
    const table = new DeviceTable(() => now)
    now = 0
    table.applyStatus(status('alive'))
    for (let minutes = 1; minutes <= 2 * 24 * 60; minutes++) {
      now = minutes * 60_000
      if (minutes % 13 === 0) table.unconfirmAll()
      table.applyHeartbeat('alive', { inflight: 0, queued: 0, ewmaMs: 5, ts: now })
    }
    expect(table.forgetGoneSince(now - DAY)).toEqual([])
  })

  it('changes no catalog for an unchanged status republished by an online device', () => {
    const table = new DeviceTable(() => now)
    now = 0
    table.applyStatus(status('steady'))
    const revision = table.revision
    now = 1_000
    table.applyStatus(status('steady'))
    expect(table.revision).toBe(revision)
    table.applyStatus(status('steady', false))
    expect(table.revision).toBeGreaterThan(revision)
  })

  it('keeps a suspect device until its suspicion ends: forgetting would clear it', () => {
    const table = new DeviceTable(() => now)
    now = 0
    const liar = table.applyStatus(status('liar'))
    table.recordRefuted(liar)
    table.applyStatus(status('liar', false))
    now = liar.suspectUntil - 1
    expect(table.forgetGoneSince(now)).toEqual([])
    now = liar.suspectUntil + 1
    expect(table.forgetGoneSince(now)).toEqual(['liar'])
  })
})
