import { describe, expect, it } from 'vitest'
import { bytesOf, toFloat16Bits, type RawTensor } from '@depinfer/shared'
import { compareOutputs } from './compare-outputs.js'

const tolerance = { absolute: 1e-3, relative: 1e-2 }
const fp32 = (name: string, values: number[], shape = [values.length]): RawTensor =>
  ({ name, datatype: 'FP32', shape, data: bytesOf(new Float32Array(values)) })

describe('compareOutputs', () => {
  it('agrees on floats that differ by rounding, in any tensor order', () => {
    const a = [fp32('logits', [10, -3.25, 0.5]), fp32('probs', [0.7, 0.3])]
    const b = [fp32('probs', [0.7004, 0.2996]), fp32('logits', [10.05, -3.26, 0.5005])]
    expect(compareOutputs(a, b, tolerance)).toEqual({ agree: true })
  })

  it('disagrees past the tolerance, naming the tensor and the element', () => {
    // 10 against 10.2: 0.2 > 0.001 + 0.01 × 10.2.
    const result = compareOutputs([fp32('logits', [1, 10])], [fp32('logits', [1, 10.2])], tolerance)
    expect(result).toEqual({ agree: false, detail: expect.stringContaining('"logits" differs at element 1: 10 against 10.199999809265137') })
  })

  it('tells zeros from a real answer (a device that never ran the model)', () => {
    expect(compareOutputs([fp32('p', [0.9, 0.1])], [fp32('p', [0, 0])], tolerance).agree).toBe(false)
  })

  it('holds NaN to NaN and infinities to their sign', () => {
    expect(compareOutputs([fp32('x', [NaN, Infinity])], [fp32('x', [NaN, Infinity])], tolerance).agree).toBe(true)
    expect(compareOutputs([fp32('x', [NaN])], [fp32('x', [0])], tolerance).agree).toBe(false)
    expect(compareOutputs([fp32('x', [Infinity])], [fp32('x', [-Infinity])], tolerance).agree).toBe(false)
    expect(compareOutputs([fp32('x', [Infinity])], [fp32('x', [3e38])], tolerance).agree).toBe(false)
  })

  it('compares integers exactly', () => {
    const int64 = (values: bigint[]): RawTensor => ({ name: 'ids', datatype: 'INT64', shape: [values.length], data: bytesOf(new BigInt64Array(values)) })
    expect(compareOutputs([int64([1n, 2n])], [int64([1n, 2n])], tolerance).agree).toBe(true)
    expect(compareOutputs([int64([1n, 2n])], [int64([1n, 3n])], tolerance)).toEqual({ agree: false, detail: expect.stringContaining('compared exactly') })
  })

  it('decodes FP16 before comparing', () => {
    const fp16 = (values: number[]): RawTensor => ({ name: 'h', datatype: 'FP16', shape: [values.length], data: bytesOf(new Uint16Array(values.map(toFloat16Bits))) })
    // Neighbouring halves near 1000 are 0.5 apart: within 0.001 + 0.01 × 1000; their bit patterns differ.
    expect(compareOutputs([fp16([1000])], [fp16([1000.5])], tolerance).agree).toBe(true)
    expect(compareOutputs([fp16([1000])], [fp16([1100])], tolerance).agree).toBe(false)
  })

  it('disagrees on different tensors, datatypes or shapes', () => {
    expect(compareOutputs([fp32('a', [1])], [fp32('b', [1])], tolerance)).toEqual({ agree: false, detail: 'output "a" is missing from one answer' })
    expect(compareOutputs([fp32('a', [1])], [], tolerance).agree).toBe(false)
    expect(compareOutputs([fp32('a', [1, 2], [1, 2])], [fp32('a', [1, 2], [2, 1])], tolerance).agree).toBe(false)
    const asInt: RawTensor = { name: 'a', datatype: 'INT32', shape: [1], data: bytesOf(new Int32Array([1])) }
    expect(compareOutputs([fp32('a', [1])], [asInt], tolerance).agree).toBe(false)
  })
})
