import { describe, expect, it, vi } from 'vitest'
import { bytesOf, type AttestationWire, type Hex, type RawTensor } from '@depinfer/shared'
import { independentOf, spotCheck, spotCheckConfig, type CheckDevice, type DeviceRun } from './spot-check.js'

const tolerance = { absolute: 1e-3, relative: 1e-2 }
const attestation = {} as AttestationWire
const outputs = (p: number): RawTensor[] => [{ name: 'p', datatype: 'FP32', shape: [2], data: bytesOf(new Float32Array([p, 1 - p])) }]
const salt = `0x${'5'.repeat(64)}` as Hex
const run = (deviceId: string, p: number): DeviceRun =>
  ({ deviceId, address: `0x${deviceId.padStart(40, '0')}` as Hex, jobId: `0x${'1'.repeat(64)}`, salt, outputs: outputs(p), attestation })
const failure = (deviceId: string): DeviceRun =>
  ({ deviceId, address: `0x${deviceId.padStart(40, '0')}` as Hex, jobId: `0x${'2'.repeat(64)}`, salt, failure: 'did not answer within 15000 ms' })

/** A fleet answering by device id: `runElsewhere` hands out the first device not excluded. */
function fleet(...devices: DeviceRun[]) {
  return vi.fn(async (excluded: readonly CheckDevice[]) => devices.find((d) => !excluded.some((e) => e.deviceId === d.deviceId)))
}

describe('spotCheck', () => {
  const answer = run('a', 0.9) as Extract<DeviceRun, { outputs: RawTensor[] }>

  it('confirms an answer a second device agrees with, without asking a third', async () => {
    const runElsewhere = fleet(run('b', 0.9001), run('c', 0.2))
    const outcome = await spotCheck(answer, runElsewhere, tolerance)
    expect(outcome).toMatchObject({ verdict: 'confirmed', faulty: [], checks: [{ deviceId: 'b', agreesWithAnswer: true }] })
    expect(runElsewhere).toHaveBeenCalledTimes(1)
    expect(runElsewhere.mock.calls[0]![0].map((d) => d.deviceId)).toEqual(['a'])
  })

  it('refutes an answer two other devices agree against', async () => {
    const outcome = await spotCheck(answer, fleet(run('b', 0.1), run('c', 0.1)), tolerance)
    expect(outcome).toMatchObject({
      verdict: 'refuted',
      faulty: ['a'],
      checks: [{ deviceId: 'b', agreesWithAnswer: false }, { deviceId: 'c', agreesWithAnswer: false }],
    })
    expect(outcome!.checks[0]!.detail).toContain('differs at element 0')
  })

  it('blames the checker when the tie-breaker sides with the answer', async () => {
    const outcome = await spotCheck(answer, fleet(run('b', 0.1), run('c', 0.9)), tolerance)
    expect(outcome).toMatchObject({ verdict: 'confirmed', faulty: ['b'], checks: [{ agreesWithAnswer: false }, { agreesWithAnswer: true }] })
  })

  it('acts on no one without a majority', async () => {
    // Two devices disagree and no third exists; all three differ; a checker fails.
    expect(await spotCheck(answer, fleet(run('b', 0.1)), tolerance)).toMatchObject({ verdict: 'inconclusive', faulty: [] })
    expect(await spotCheck(answer, fleet(run('b', 0.1), run('c', 0.5)), tolerance)).toMatchObject({ verdict: 'inconclusive', faulty: [] })
    expect(await spotCheck(answer, fleet(failure('b')), tolerance)).toMatchObject({
      verdict: 'inconclusive', faulty: [], checks: [{ deviceId: 'b', detail: 'did not answer within 15000 ms' }],
    })
    expect(await spotCheck(answer, fleet(run('b', 0.1), failure('c')), tolerance)).toMatchObject({ verdict: 'inconclusive', faulty: [] })
  })

  it('records nothing when no other device serves the file', async () => {
    expect(await spotCheck(answer, fleet(), tolerance)).toBeUndefined()
  })
})

describe('independentOf', () => {
  const device = (deviceId: string, key: string, provider?: string) =>
    ({ deviceId, address: `0x${key.repeat(40)}` as Hex, provider: provider === undefined ? undefined : (`0x${provider.repeat(40)}` as Hex) })

  it('leaves out the checked devices, any device with their signing key, and any device of their providers', () => {
    const answered = device('a', '1', 'p')
    const candidates = [
      device('a', '1', 'p'), // itself
      device('a2', '1', 'p'), // its key under another id
      device('sibling', '2', 'p'), // another device of its provider
      device('stranger', '3', 'q'),
      device('unregistered', '4'), // no provider known (no registry): judged by key alone
    ]
    expect(independentOf(candidates, [answered]).map((c) => c.deviceId)).toEqual(['stranger', 'unregistered'])
    // The tie-breaker must be independent of both earlier runs.
    expect(independentOf(candidates, [answered, device('stranger', '3', 'q')]).map((c) => c.deviceId)).toEqual(['unregistered'])
  })
})

describe('spotCheckConfig', () => {
  it('reads the rate and tolerances, keeping the defaults for missing or invalid values', () => {
    expect(spotCheckConfig({})).toEqual({ rate: 0.01, tolerance: { absolute: 1e-3, relative: 1e-2 } })
    expect(spotCheckConfig({ SPOT_CHECK_RATE: '0', SPOT_CHECK_ABS_TOLERANCE: '0', SPOT_CHECK_REL_TOLERANCE: '0.5' }))
      .toEqual({ rate: 0, tolerance: { absolute: 0, relative: 0.5 } })
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {})
    expect(spotCheckConfig({ SPOT_CHECK_RATE: '1.5' }).rate).toBe(0.01)
    expect(spotCheckConfig({ SPOT_CHECK_RATE: 'often' }).rate).toBe(0.01)
    expect(warn).toHaveBeenCalledWith(expect.stringContaining('SPOT_CHECK_RATE="often"'))
    warn.mockRestore()
  })
})
