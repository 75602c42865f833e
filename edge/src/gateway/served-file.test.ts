/** Which file a device runs for a model, and whether the edge accepts it (routing and the attestation's model hash). */
import { describe, expect, it } from 'vitest'
import { PROTOCOL_VERSION, type ModelDescriptor } from '@depinfer/shared'
import { DeviceTable } from './device-table.js'
import type { CatalogModel } from './catalog.js'
import { acceptedFileOn, routableView, variantRan } from './served-file.js'

const FP32 = 'a'.repeat(64)
const INT8 = 'b'.repeat(64)
const OTHER = 'c'.repeat(64)

const model = (overrides: Partial<ModelDescriptor> = {}): ModelDescriptor => ({
  name: 'cls',
  version: '1',
  sha256: FP32,
  platform: 'onnxruntime_onnx',
  inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 4] }],
  outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 2] }],
  maxBatch: 1,
  state: 'ready',
  ...overrides,
})
const device = (served: ModelDescriptor) =>
  new DeviceTable(() => 0).applyStatus({ protocol: PROTOCOL_VERSION, deviceId: 'd', online: true, models: [served] })
const published = [{ version: '1', kind: 'int8' as const, sha256: INT8 }]

describe('the file a device runs', () => {
  it('accepts the version\'s own file, whether the device says so or (an older agent) says nothing', () => {
    expect(acceptedFileOn(device(model({ runs: { variant: 'fp32', sha256: FP32 } })), model(), published)).toBe(FP32)
    expect(acceptedFileOn(device(model()), model(), [])).toBe(FP32)
  })

  it('accepts an int8 file only when it was published and accepted for that very version', () => {
    expect(acceptedFileOn(device(model({ runs: { variant: 'int8', sha256: INT8 } })), model(), published)).toBe(INT8)
    expect(acceptedFileOn(device(model({ runs: { variant: 'int8', sha256: OTHER } })), model(), published)).toBeUndefined()
    expect(acceptedFileOn(device(model({ runs: { variant: 'int8', sha256: INT8 } })), model(), [])).toBeUndefined()
    const v2 = model({ version: '2' })
    expect(acceptedFileOn(device(model({ version: '2', runs: { variant: 'int8', sha256: INT8 } })), v2, published)).toBeUndefined()
  })

  it('refuses a device claiming another file as the version\'s own, or another model identity', () => {
    expect(acceptedFileOn(device(model({ runs: { variant: 'fp32', sha256: OTHER } })), model(), published)).toBeUndefined()
    expect(acceptedFileOn(device(model({ sha256: OTHER })), model(), published)).toBeUndefined()
    expect(acceptedFileOn(device(model({ name: 'other' })), model(), published)).toBeUndefined()
  })

  it('names the variant an attested model hash is', () => {
    expect(variantRan(published, '1', `0x${INT8}`)).toBe('int8')
    expect(variantRan(published, '1', `0x${FP32}`)).toBe('fp32')
    expect(variantRan(published, '2', `0x${INT8}`)).toBe('fp32')
    expect(variantRan(undefined, '1', `0x${FP32}`)).toBe('fp32')
  })

  it('counts for readiness only the devices a job could go to', () => {
    const entry = (...served: ModelDescriptor[]): CatalogModel => ({ descriptor: model(), defining: true, readyDevices: served.map(device), state: 'READY', reason: '' })
    const accepted = model({ runs: { variant: 'int8', sha256: INT8 } })
    const unaccepted = model({ runs: { variant: 'int8', sha256: OTHER } })
    expect(routableView(entry(model(), accepted, unaccepted), published)).toMatchObject({ state: 'READY', reason: '' })
    expect(routableView(entry(model(), accepted, unaccepted), published).readyDevices).toHaveLength(2)
    // Only devices no job would go to: listed, not ready, and the reason says why.
    expect(routableView(entry(unaccepted, accepted), [])).toMatchObject({ readyDevices: [], state: 'UNAVAILABLE', reason: expect.stringMatching(/^not routable: /) })
    // Anything else keeps the catalog's own state and reason.
    const loading: CatalogModel = { ...entry(), state: 'LOADING', reason: 'devices are loading the model' }
    expect(routableView(loading, [])).toMatchObject({ state: 'LOADING', reason: 'devices are loading the model' })
  })
})
