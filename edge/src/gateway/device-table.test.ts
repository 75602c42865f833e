import { describe, expect, it } from 'vitest'
import { PROTOCOL_VERSION, type DeviceStatus } from '@depinfer/shared'
import { DeviceTable, REFUTED_SUSPECT_MAX_MS, REFUTED_SUSPECT_MS, SUSPECT_FOR_MS } from './device-table.js'

/** A device's status with no models: the table's entries here are made from these. */
const status = (deviceId: string, online = true): DeviceStatus => ({ protocol: PROTOCOL_VERSION, deviceId, online, models: [] })
/** Two kinds of job (jobClassOf): a classifier's and a detector's. */
const CLS = 'c1a55/15'
const DET = 'de7ec7/22'

describe('DeviceTable suspicion', () => {
  let now = 1_000_000
  const table = new DeviceTable(() => now)
  const device = (deviceId: string) => table.applyStatus(status(deviceId))

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
    for (let i = 0; i < 3; i++) table.recordFailure(slow, 'cls/10')
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

  it('is optimistic while the device is idle (the fastest round trip seen), so a newcomer gets tried', () => {
    const table = new DeviceTable(() => now)
    const measured = table.applyStatus(status('measured'))
    const newcomer = table.applyStatus(status('newcomer'))
    table.recordSuccess(measured, 30, 'cls/10')
    table.recordSuccess(measured, 50, 'cls/10')
    expect(table.expectedWaitMs(measured, 'cls/10')).toBe(34)
    // Idle and unknown: as fast as the fastest round trip seen (30 ms), ahead of the 34 ms device.
    expect(table.expectedWaitMs(newcomer, 'cls/10')).toBe(30)
    // A kind of job nobody ran yet: the fastest round trip of any kind.
    expect(table.expectedWaitMs(newcomer, 'det/20')).toBe(30)
  })

  it('believes a heartbeat only when it is slower than the fastest round trip seen, and sends an unmeasured device one job at a time', () => {
    const table = new DeviceTable(() => now)
    const fast = table.applyStatus(status('fast'))
    table.recordSuccess(fast, 10, 'cls/10')
    const boaster = table.applyStatus(status('boaster'))
    table.applyHeartbeat('boaster', { inflight: 0, queued: 0, ewmaMs: 0.01, ts: 0 })
    expect(table.expectedWaitMs(boaster, 'cls/10')).toBe(10)
    const slow = table.applyStatus(status('slow'))
    table.applyHeartbeat('slow', { inflight: 0, queued: 0, ewmaMs: 400, ts: 0 })
    expect(table.expectedWaitMs(slow, 'cls/10')).toBe(400)
    // Sent a job, not answered yet: no second one (even if every measured device is slower).
    table.jobSent(slow, 'cls/10')
    expect(table.expectedWaitMs(slow, 'cls/10')).toBe(Number.POSITIVE_INFINITY)
    // Its job timed out (or failed): idle again, and still as slow as it says (nothing measured).
    table.jobClosed(slow, 'cls/10')
    expect(table.expectedWaitMs(slow, 'cls/10')).toBe(400)
    table.jobSent(slow, 'cls/10')
    table.jobClosed(slow, 'cls/10')
    table.recordSuccess(slow, 380, 'cls/10')
    expect(table.expectedWaitMs(slow, 'cls/10')).toBe(380)
  })

  it('blames a timeout on the device only for a budget of at least 1 s and 4x what it was expected to take', () => {
    const table = new DeviceTable(() => now)
    const device = table.applyStatus(status('d'))
    expect(table.timeoutWouldBeItsFault(device, 999, 'det/20')).toBe(false)
    expect(table.timeoutWouldBeItsFault(device, 1_000, 'det/20')).toBe(true)
    table.recordSuccess(device, 500, 'det/20')
    table.jobSent(device, 'det/20')
    // Expected 2 × 500 ms with one job ahead of it: only a budget of 4 s or more blames it.
    expect(table.timeoutWouldBeItsFault(device, 3_999, 'det/20')).toBe(false)
    expect(table.timeoutWouldBeItsFault(device, 4_000, 'det/20')).toBe(true)
    expect(table.budgetTooShort(device, 999, 'det/20')).toBe(true)
    expect(table.budgetTooShort(device, 1_000, 'det/20')).toBe(false)
    // A kind it never ran counts at the fleet's typical round trip for it (another device's 2 s here).
    const other = table.applyStatus(status('other'))
    table.recordSuccess(other, 2_000, 'det/22')
    expect(table.timeoutWouldBeItsFault(device, 9_999, 'det/22')).toBe(false)
    expect(table.timeoutWouldBeItsFault(device, 10_000, 'det/22')).toBe(true)
  })
})

describe('DeviceTable expected time per kind of job', () => {
  let now = 0

  it('expects a classifier job to take what classifier jobs took there, not what its detector jobs took', () => {
    const table = new DeviceTable(() => now)
    const both = table.applyStatus(status('both'))
    for (let i = 0; i < 5; i++) {
      table.recordSuccess(both, 500, DET)
      table.recordSuccess(both, 5, CLS)
    }
    // One figure per device would say about 100 ms for both (the audit saw a 2 ms classifier
    // device passed over for one whole detector run).
    expect(table.expectedWaitMs(both, CLS)).toBeCloseTo(5, 6)
    expect(table.expectedWaitMs(both, DET)).toBeCloseTo(500, 6)
  })

  it('counts the jobs out there at what each kind takes there: a classifier job waits behind a detector job', () => {
    const table = new DeviceTable(() => now)
    const device = table.applyStatus(status('d'))
    table.recordSuccess(device, 500, DET)
    table.recordSuccess(device, 5, CLS)
    table.jobSent(device, DET)
    table.jobSent(device, DET)
    table.jobSent(device, CLS)
    expect(table.expectedWaitMs(device, CLS)).toBe(2 * 500 + 5 + 5)
    table.jobClosed(device, DET)
    table.jobClosed(device, CLS)
    expect(table.expectedWaitMs(device, CLS)).toBe(500 + 5)
    expect(device.inflight).toBe(1)
    // Other gateways' jobs (the heartbeat's excess over ours) at the device's overall round trip.
    table.applyHeartbeat('d', { inflight: 1, queued: 2, ewmaMs: 1, ts: 0 })
    expect(device.foreignLoad).toBe(2)
    expect(table.expectedWaitMs(device, CLS)).toBeCloseTo(500 + 2 * device.measuredEwmaMs! + 5, 9)
  })

  it('guesses a kind the device never ran optimistically, one job at a time, without blocking its other kinds', () => {
    const table = new DeviceTable(() => now)
    const classifier = table.applyStatus(status('classifier'))
    const newToIt = table.applyStatus(status('new-to-classifying'))
    table.recordSuccess(classifier, 4, CLS)
    table.recordSuccess(newToIt, 500, DET)
    expect(table.expectedWaitMs(newToIt, CLS)).toBe(4)
    table.jobSent(newToIt, CLS)
    expect(table.expectedWaitMs(newToIt, CLS)).toBe(Number.POSITIVE_INFINITY)
    // The classifier job out there counts at the guess for a detector job queued behind it.
    expect(table.expectedWaitMs(newToIt, DET)).toBe(4 + 500)
  })

  it('brings a device slow once back towards the typical round trip, halving its excess every 30 s without a job of that kind', () => {
    now = 0
    const table = new DeviceTable(() => now)
    const cold = table.applyStatus(status('cold'))
    const warm = table.applyStatus(status('warm'))
    for (let i = 0; i < 8; i++) table.recordSuccess(warm, 500, DET)
    table.recordSuccess(warm, 5, CLS)
    // A cold first run: three times the typical.
    table.recordSuccess(cold, 1_500, DET)
    expect(table.expectedWaitMs(cold, DET)).toBe(1_500)
    expect(table.estimatesChangeAt(cold)).toBe(30_000)
    now = 29_999
    expect(table.expectedWaitMs(cold, DET)).toBe(1_500)
    now = 30_000
    expect(table.expectedWaitMs(cold, DET)).toBe(1_000)
    // Now worth a job once the warm device has one out: 1,000 against (1 + 1) × 500.
    table.jobSent(warm, DET)
    expect(table.expectedWaitMs(cold, DET)).toBeLessThanOrEqual(table.expectedWaitMs(warm, DET))
    // Jobs of another kind there do not stop it (a classifier stream kept it a 1.5 s detector device for good).
    table.jobSent(cold, CLS)
    now = 60_000
    expect(table.expectedWaitMs(cold, DET)).toBe(5 + 750)
    // A job of its own kind out there: no relaxing until it is measured.
    table.jobSent(cold, DET)
    expect(table.expectedWaitMs(cold, DET)).toBe(5 + 1_500 + 1_500)
    expect(table.estimatesChangeAt(cold)).toBe(Number.POSITIVE_INFINITY)
    table.jobClosed(cold, DET)
    table.jobClosed(cold, CLS)
    // At most eight halvings; a device at or under the typical is never changed.
    now = 10_000_000
    expect(table.expectedWaitMs(cold, DET)).toBe(500 + 1_000 / 256)
    expect(table.estimatesChangeAt(cold)).toBe(Number.POSITIVE_INFINITY)
    expect(table.expectedWaitMs(warm, DET)).toBe(1_000)
    // A clock that went back does not make it look slower than measured.
    now = 0
    expect(table.expectedWaitMs(cold, DET)).toBe(1_500)
  })

  it('leaves a kind of job that failed three times in a row on a device out there for a minute, while its other kinds are served', () => {
    now = 0
    const table = new DeviceTable(() => now)
    const device = table.applyStatus(status('detector-fails'))
    const other = table.applyStatus(status('other'))
    table.recordSuccess(other, 500, DET)
    for (let i = 0; i < 3; i++) {
      expect(table.expectedWaitMs(device, DET)).toBeLessThan(Number.POSITIVE_INFINITY)
      table.recordFailure(device, DET)
      // Its classifier answers in between: the device itself never becomes suspect.
      table.recordSuccess(device, 5, CLS)
    }
    expect(table.isSuspect(device)).toBe(false)
    expect(table.expectedWaitMs(device, DET)).toBe(Number.POSITIVE_INFINITY)
    expect(table.expectedWaitMs(device, CLS)).toBe(5)
    expect(table.estimatesChangeAt(device)).toBe(SUSPECT_FOR_MS)
    now = SUSPECT_FOR_MS
    expect(table.expectedWaitMs(device, DET)).toBe(500)
    // An answer of that kind clears its count: two more failures do not put it out again.
    table.recordFailure(device, DET)
    table.recordFailure(device, DET)
    table.recordSuccess(device, 450, DET)
    table.recordFailure(device, DET)
    expect(table.expectedWaitMs(device, DET)).toBe(450)
  })

  it('does not bring back a device that is slow every time: its own median is as far as it relaxes', () => {
    now = 0
    const table = new DeviceTable(() => now)
    const fast = table.applyStatus(status('fast'))
    const slow = table.applyStatus(status('slow'))
    for (let i = 0; i < 8; i++) table.recordSuccess(fast, 200, DET)
    table.recordSuccess(slow, 2_000, DET)
    // One run says too little (it may have been a cold one): relaxed towards the typical, tried again.
    now = 120_000
    expect(table.expectedWaitMs(slow, DET)).toBe(200 + 1_800 / 16)
    // Slow again: from two runs on, not below its own median.
    table.recordSuccess(slow, 2_000, DET)
    now = 1_000_000
    expect(table.expectedWaitMs(slow, DET)).toBe(2_000)
    expect(table.estimatesChangeAt(slow)).toBe(Number.POSITIVE_INFINITY)
    // Whereas a cold first run is forgotten at the first faster answer.
    const cold = table.applyStatus(status('cold'))
    table.recordSuccess(cold, 1_500, DET)
    table.recordSuccess(cold, 300, DET)
    expect(table.expectedWaitMs(cold, DET)).toBe(300)
  })
})

describe('DeviceTable forgetting devices gone for long', () => {
  const DAY = 86_400_000
  let now = 0

  it('forgets devices offline or silent since before the cutoff, and keeps the rest', () => {
    const table = new DeviceTable(() => now)
    table.applyStatus(status('left'))
    table.recordSuccess(table.get('left')!, 40, 'cls/10')
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
    expect(table.applyStatus(status('left')).measuredEwmaMs).toBeUndefined()
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

describe('DeviceTable queue estimates (admission)', () => {
  const now = 1_000_000

  it("counts each job queued there at the device's own time for its kind, not at its round trip", () => {
    const table = new DeviceTable(() => now)
    const device = table.applyStatus(status('d'))
    expect(table.queueEstimate(device, CLS)).toBeUndefined()
    // Round trips grow with the queue the jobs waited in; the device's own time does not.
    table.recordSuccess(device, 2_000, DET, 200)
    table.recordSuccess(device, 900, CLS, 2)
    table.jobSent(device, DET)
    table.jobSent(device, CLS)
    table.jobSent(device, CLS)
    expect(table.queueEstimate(device, CLS)).toEqual({ waitMs: 200 + 2 * 2, perJobMs: 2 })
    // Others' jobs there (from its heartbeat) count at this kind's time.
    table.applyHeartbeat('d', { inflight: 3 + 1, queued: 3, ewmaMs: 50, ts: now })
    expect(table.queueEstimate(device, CLS)?.waitMs).toBe(200 + 2 * 2 + 4 * 2)
  })

  it('gives no estimate while a kind queued there has no time of its own (an unmeasured kind may be fast)', () => {
    const table = new DeviceTable(() => now)
    const device = table.applyStatus(status('d'))
    table.recordSuccess(device, 5, CLS, 2)
    table.jobSent(device, DET)
    expect(table.queueEstimate(device, CLS)).toBeUndefined()
  })

  it("takes a batch's run shared among its jobs, and a faster second time over a cold first one", () => {
    const table = new DeviceTable(() => now)
    const device = table.applyStatus(status('d'))
    table.recordSuccess(device, 3_000, DET, 1_500)
    table.recordSuccess(device, 400, DET, 300)
    expect(table.queueEstimate(device, DET)?.perJobMs).toBe(300)
    table.recordSuccess(device, 400, DET, 200)
    expect(table.queueEstimate(device, DET)?.perJobMs).toBeCloseTo(300 * 0.8 + 200 * 0.2, 9)
  })
})
