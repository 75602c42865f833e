import { describe, expect, it } from 'vitest'
import {
  DeviceStatusSchema,
  HeartbeatSchema,
  JobHeaderSchema,
  ModelDescriptorSchema,
  ResultHeaderSchema,
  PROTOCOL_VERSION,
  TensorSpecSchema,
} from './messages.js'

const SHA = 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'

const model = () => ({
  name: 'resnet18',
  version: '1.0',
  sha256: SHA,
  platform: 'onnxruntime_onnx',
  inputs: [{ name: 'input', datatype: 'FP32', shape: [-1, 3, 224, 224] }],
  outputs: [{ name: 'logits', datatype: 'FP32', shape: [-1, 1000] }],
  maxBatch: 4,
  state: 'ready',
})

const status = () => ({
  protocol: PROTOCOL_VERSION,
  deviceId: 'pi-kitchen',
  online: true,
  models: [model()],
  hw: { arch: 'arm64', cpus: 4, memMB: 8192, accel: [] },
  agentVersion: '0.1.0',
  runtime: { name: 'onnxruntime-node', version: '1.20.0', executionProviders: ['cpu'] },
})

/** The paths of the issues a failed parse reports. */
function issuePaths(result: { success: boolean; error?: { issues: { path: PropertyKey[] }[] } }): string[] {
  expect(result.success).toBe(false)
  return result.error!.issues.map((issue) => issue.path.join('.'))
}

describe('DeviceStatusSchema', () => {
  it('accepts a valid status and returns its fields', () => {
    const result = DeviceStatusSchema.safeParse(status())
    expect(result.success).toBe(true)
    expect(result.data).toEqual(status())
  })

  it("keeps a failed model's error, cut to 300 characters rather than refusing the device's whole status", () => {
    const failed = (error: string) => DeviceStatusSchema.parse({ ...status(), models: [model(), { ...model(), name: 'broken', state: 'failed', error }] })
    expect(failed('Unsupported model IR version: 99').models[1]!.error).toBe('Unsupported model IR version: 99')
    const long = failed('e'.repeat(5_000))
    expect(long.models.map((m) => m.name)).toEqual(['resnet18', 'broken'])
    expect(long.models[1]!.error).toBe(`${'e'.repeat(299)}…`)
  })

  it('accepts the offline status a last will carries, defaulting models to []', () => {
    expect(DeviceStatusSchema.parse({ protocol: PROTOCOL_VERSION, deviceId: 'pi', online: false, models: [] })).toEqual({ protocol: PROTOCOL_VERSION, deviceId: 'pi', online: false, models: [] })
    expect(DeviceStatusSchema.parse({ protocol: PROTOCOL_VERSION, deviceId: 'pi', online: false }).models).toEqual([])
  })

  it('accepts the execution tuning an agent reports, and a status from an agent that reports none', () => {
    const tuned = {
      ...status(),
      models: [{ ...model(), executionProvider: 'cuda' }],
      runtime: {
        name: 'onnxruntime-node',
        version: '1.30.0',
        executionProviders: ['cuda', 'cpu'],
        threads: { intraOp: 4, interOp: 0, allowSpinning: false },
        graphOptimizationLevel: 'all',
        executionMode: 'sequential',
        skippedExecutionProviders: [{ name: 'tensorrt', reason: 'Failed to load shared library' }],
      },
    }
    expect(DeviceStatusSchema.parse(tuned)).toEqual(tuned)
    // Reporting fields are strings, not enums: a level a newer onnxruntime adds still parses.
    expect(DeviceStatusSchema.parse({ ...tuned, runtime: { ...tuned.runtime, graphOptimizationLevel: 'layout' } }).runtime?.graphOptimizationLevel).toBe('layout')
    // An agent from before allowSpinning was reported.
    expect(DeviceStatusSchema.parse({ ...tuned, runtime: { ...tuned.runtime, threads: { intraOp: 4, interOp: 0 } } }).runtime?.threads).toEqual({ intraOp: 4, interOp: 0 })
    const older = DeviceStatusSchema.parse(status())
    expect(older.runtime).toEqual({ name: 'onnxruntime-node', version: '1.20.0', executionProviders: ['cpu'] })
    expect(older.models[0]!.executionProvider).toBeUndefined()
  })

  it.each([
    ['negative threads', { threads: { intraOp: -1, interOp: 0 } }, 'runtime.threads.intraOp'],
    ['fractional threads', { threads: { intraOp: 1, interOp: 0.5 } }, 'runtime.threads.interOp'],
    ['spinning as a string', { threads: { intraOp: 1, interOp: 0, allowSpinning: 'no' } }, 'runtime.threads.allowSpinning'],
    ['a skipped EP without a reason', { skippedExecutionProviders: [{ name: 'cuda' }] }, 'runtime.skippedExecutionProviders.0.reason'],
  ])('rejects runtime tuning with %s', (_case, patch, path) => {
    expect(issuePaths(DeviceStatusSchema.safeParse({ ...status(), runtime: { ...status().runtime, ...patch } }))).toContain(path)
  })

  it.each(['', 'pi/kitchen', 'pi+', '#', '-pi', '.pi', 'pi kitchen', 'a'.repeat(65), 42])('rejects deviceId %j', (deviceId) => {
    expect(issuePaths(DeviceStatusSchema.safeParse({ ...status(), deviceId }))).toContain('deviceId')
  })

  it.each([
    ['uppercase hex', SHA.toUpperCase()],
    ['63 digits', SHA.slice(1)],
    ['65 digits', SHA + '0'],
    ['a non-hex digit', 'g' + SHA.slice(1)],
    ['a 0x prefix', '0x' + SHA.slice(2)],
    ['empty', ''],
  ])('rejects a model sha256 with %s', (_case, sha256) => {
    const bad = { ...status(), models: [{ ...model(), sha256 }] }
    expect(issuePaths(DeviceStatusSchema.safeParse(bad))).toContain('models.0.sha256')
  })

  it.each([
    ['protocol 1 (keccak256 commitments, which this edge cannot verify)', { protocol: 1 }, 'protocol'],
    ['protocol 2 (one frame per message: it would drop the rest of a batch)', { protocol: 2 }, 'protocol'],
    ['a protocol from the future', { protocol: PROTOCOL_VERSION + 1 }, 'protocol'],
    ['a missing protocol', { protocol: undefined }, 'protocol'],
    ['online as a string', { online: 'yes' }, 'online'],
    ['a negative cpu count', { hw: { arch: 'x64', cpus: -1, memMB: 1, accel: [] } }, 'hw.cpus'],
  ])('rejects %s', (_case, patch, path) => {
    expect(issuePaths(DeviceStatusSchema.safeParse({ ...status(), ...patch }))).toContain(path)
  })
})

describe('ModelDescriptorSchema / TensorSpecSchema', () => {
  it('accepts a valid model descriptor', () => {
    expect(ModelDescriptorSchema.safeParse(model()).success).toBe(true)
  })

  it.each([
    ['no inputs', { inputs: [] }, 'inputs'],
    ['no outputs', { outputs: [] }, 'outputs'],
    ['a batch of 0', { maxBatch: 0 }, 'maxBatch'],
    ['an unknown state', { state: 'busy' }, 'state'],
    ['another platform', { platform: 'tensorrt_plan' }, 'platform'],
    ['a bad name', { name: 'a/b' }, 'name'],
    ['a version with a slash', { version: '1/2' }, 'version'],
    ['a non-string execution provider', { executionProvider: 1 }, 'executionProvider'],
  ])('rejects a model with %s', (_case, patch, path) => {
    expect(issuePaths(ModelDescriptorSchema.safeParse({ ...model(), ...patch }))).toContain(path)
  })

  it.each([
    [{ name: '', datatype: 'FP32', shape: [1] }, 'name'],
    [{ name: 'x', datatype: 'BF16', shape: [1] }, 'datatype'],
    [{ name: 'x', datatype: 'FP32', shape: [-2] }, 'shape.0'],
    [{ name: 'x', datatype: 'FP32', shape: [1.5] }, 'shape.0'],
  ])('rejects tensor spec %j', (spec, path) => {
    expect(issuePaths(TensorSpecSchema.safeParse(spec))).toContain(path)
  })
})

describe('HeartbeatSchema / JobHeaderSchema / ResultHeaderSchema', () => {
  it('accepts a heartbeat and rejects negative load', () => {
    expect(HeartbeatSchema.safeParse({ inflight: 0, queued: 2, ewmaMs: 12.5, ts: 1_700_000_000_000 }).success).toBe(true)
    expect(issuePaths(HeartbeatSchema.safeParse({ inflight: -1, queued: 0, ewmaMs: 0, ts: 0 }))).toContain('inflight')
  })

  const job = () => ({
    protocol: PROTOCOL_VERSION,
    jobId: `0x${'ab'.repeat(32)}`,
    replyTo: 'depinfer/v1/gateways/gw/results/pi',
    model: { name: 'resnet18', version: '1', sha256: SHA },
    deadlineMs: 5000,
    attempt: 1,
    attest: { chainId: '31337', verifyingContract: `0x${'12'.repeat(20)}`, salt: `0x${'cd'.repeat(32)}`, priceWei: '0' },
  })

  it('accepts a job header and defaults outputs to []', () => {
    expect(JobHeaderSchema.parse(job()).outputs).toEqual([])
  })

  it.each([
    ['an empty jobId', { jobId: '' }, 'jobId'],
    ['a jobId that is not bytes32 hex', { jobId: 'j-1' }, 'jobId'],
    ['a jobId one byte short', { jobId: `0x${'ab'.repeat(31)}` }, 'jobId'],
    ['a short salt', { attest: { ...job().attest, salt: '0x12' } }, 'attest.salt'],
    ['a negative price', { attest: { ...job().attest, priceWei: '-1' } }, 'attest.priceWei'],
    ['no attest', { attest: undefined }, 'attest'],
    ['a bad model sha256', { model: { name: 'resnet18', version: '1', sha256: 'abc' } }, 'model.sha256'],
    ['a zero deadline', { deadlineMs: 0 }, 'deadlineMs'],
    ['attempt 0', { attempt: 0 }, 'attempt'],
  ])('rejects a job header with %s', (_case, patch, path) => {
    expect(issuePaths(JobHeaderSchema.safeParse({ ...job(), ...patch }))).toContain(path)
  })

  const result = () => ({
    protocol: PROTOCOL_VERSION,
    jobId: 'j-1',
    deviceId: 'pi',
    attempt: 1,
    timings: { queueMs: 0, inferMs: 3.2, totalMs: 3.5 },
  })

  it('accepts a result header with and without an error', () => {
    expect(ResultHeaderSchema.safeParse(result()).success).toBe(true)
    const failed = { ...result(), error: { code: 'invalid_input', message: 'bad', field: 'inputs[0].shape' } }
    expect(ResultHeaderSchema.parse(failed).error).toEqual(failed.error)
  })

  it.each([
    ['an unknown error code', { error: { code: 'oops', message: 'x' } }, 'error.code'],
    ['a bad deviceId', { deviceId: 'a/b' }, 'deviceId'],
    ['negative timings', { timings: { queueMs: -1, inferMs: 0, totalMs: 0 } }, 'timings.queueMs'],
  ])('rejects a result header with %s', (_case, patch, path) => {
    expect(issuePaths(ResultHeaderSchema.safeParse({ ...result(), ...patch }))).toContain(path)
  })
})
