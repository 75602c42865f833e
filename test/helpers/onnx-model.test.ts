/** Proves the hand-rolled ONNX writer emits models that onnxruntime-node loads and runs correctly. */
import * as ort from 'onnxruntime-node'
import { beforeAll, describe, expect, it } from 'vitest'
import { float16BitsToNumber, toFloat16Bits } from '../../shared/src/float16.js'
import { buildModel, kitchenSinkModel, rawData, tinyClassifierModel, type ValueSpec } from './onnx-model.js'

interface Meta {
  name: string
  type?: string
  shape?: (number | string)[]
}

function metadata(list: readonly ort.InferenceSession.ValueMetadata[]): Meta[] {
  return list.map((m) => (m.isTensor ? { name: m.name, type: m.type, shape: [...m.shape] } : { name: m.name }))
}

function output(result: ort.InferenceSession.OnnxValueMapType, name: string): ort.Tensor {
  const value = result[name]
  if (!(value instanceof ort.Tensor)) throw new Error(`output ${name} missing or not a tensor`)
  return value
}

/** Element values as numbers or bigints, whatever typed array ORT returned. */
function values(tensor: ort.Tensor): (number | bigint)[] {
  const data = tensor.data
  if (data instanceof BigInt64Array || data instanceof BigUint64Array) return Array.from(data)
  if (Array.isArray(data)) throw new Error(`unexpected string tensor ${tensor.type}`)
  return Array.from(data as ArrayLike<number>)
}

/** Two's-complement wrap of a doubled integer, computed in bigint (independent of ORT). */
function doubledWrapped(v: number | bigint, bits: number, signed: boolean): bigint {
  const doubled = 2n * BigInt(v)
  return signed ? BigInt.asIntN(bits, doubled) : BigInt.asUintN(bits, doubled)
}

describe('kitchenSinkModel', () => {
  const model = kitchenSinkModel()
  let session: ort.InferenceSession

  beforeAll(async () => {
    session = await ort.InferenceSession.create(model.bytes)
  })

  const ORT_TYPES: [string, string][] = [
    ['f32', 'float32'],
    ['f16', 'float16'],
    ['f64', 'float64'],
    ['i64', 'int64'],
    ['i32', 'int32'],
    ['i16', 'int16'],
    ['i8', 'int8'],
    ['u8', 'uint8'],
    ['b', 'bool'],
  ]

  it('declares its inputs and outputs as onnxruntime reads them', () => {
    expect(metadata(session.inputMetadata)).toEqual(ORT_TYPES.map(([name, type]) => ({ name, type, shape: ['N', 4] })))
    expect(metadata(session.outputMetadata)).toEqual(ORT_TYPES.map(([name, type]) => ({ name: `${name}_out`, type, shape: ['N', 4] })))
    expect(model.inputs.map((i) => i.name)).toEqual(ORT_TYPES.map(([name]) => name))
  })

  it('computes every output exactly, for any batch size', async () => {
    const f32 = new Float32Array([1.5, -2.25, 0, 3.4028234663852886e38, 1e-30, -7, 0.1, 123456.5])
    const f16Numbers = [1, 1.5, -2, 0.099975586, 65504, -0, 1024, 0.5]
    const f16 = Uint16Array.from(f16Numbers, toFloat16Bits)
    const f64 = new Float64Array([0.1, -0.2, 1e300, Number.MAX_VALUE, 5e-324, -3, 2 ** 52 + 1, Math.PI])
    // Beyond 2^53 so a lossy number round-trip would show; -2^62 doubles to int64's minimum.
    const i64 = new BigInt64Array([2n ** 53n + 1n, 2n ** 60n + 3n, -(2n ** 62n), -1n, 0n, 12345678901234567n, 2n ** 62n - 1n, -7n])
    const i32 = new Int32Array([2 ** 30 - 1, -(2 ** 30), 0, 1, -1, 123456789, -5, 7])
    const i16 = new Int16Array([-16384, 16383, 12345, -1, 0, 1, -300, 300])
    const i8 = new Int8Array([-64, 63, -1, 0, 1, 10, -10, 50])
    const u8 = new Uint8Array([0, 1, 127, 128, 200, 255, 100, 42]) // 128+ wraps mod 256
    const b = new Uint8Array([1, 0, 1, 1, 0, 0, 1, 0])

    /** The first `rows` rows of every input, so the same data runs at different batch sizes. */
    const feeds = (rows: number): Record<string, ort.Tensor> => {
      const n = rows * 4
      return {
        f32: new ort.Tensor('float32', f32.subarray(0, n), [rows, 4]),
        f16: new ort.Tensor('float16', f16.subarray(0, n), [rows, 4]),
        f64: new ort.Tensor('float64', f64.subarray(0, n), [rows, 4]),
        i64: new ort.Tensor('int64', i64.subarray(0, n), [rows, 4]),
        i32: new ort.Tensor('int32', i32.subarray(0, n), [rows, 4]),
        i16: new ort.Tensor('int16', i16.subarray(0, n), [rows, 4]),
        i8: new ort.Tensor('int8', i8.subarray(0, n), [rows, 4]),
        u8: new ort.Tensor('uint8', u8.subarray(0, n), [rows, 4]),
        b: new ort.Tensor('bool', b.subarray(0, n), [rows, 4]),
      }
    }
    const result = await session.run(feeds(2))

    for (const [name, type] of ORT_TYPES) {
      const out = output(result, `${name}_out`)
      expect(out.type, name).toBe(type)
      expect(out.dims, name).toEqual([2, 4])
    }
    expect(values(output(result, 'f32_out'))).toEqual(Array.from(f32, (v) => Math.fround(v * 2)))
    expect(values(output(result, 'f32_out'))[3]).toBe(Infinity)
    // Doubling a half is exact except 65504 (the largest half), which overflows to Infinity.
    expect(values(output(result, 'f16_out')).map((bits) => float16BitsToNumber(Number(bits)))).toEqual(
      f16Numbers.map((v) => float16BitsToNumber(toFloat16Bits(2 * float16BitsToNumber(toFloat16Bits(v))))),
    )
    expect(float16BitsToNumber(Number(values(output(result, 'f16_out'))[4]))).toBe(Infinity)
    expect(values(output(result, 'f64_out'))).toEqual(Array.from(f64, (v) => v * 2))
    expect(values(output(result, 'i64_out'))).toEqual(Array.from(i64, (v) => doubledWrapped(v, 64, true)))
    expect(values(output(result, 'i64_out'))[2]).toBe(-(2n ** 63n))
    expect(values(output(result, 'i32_out'))).toEqual(Array.from(i32, (v) => Number(doubledWrapped(v, 32, true))))
    expect(values(output(result, 'i16_out'))).toEqual(Array.from(i16, (v) => Number(doubledWrapped(v, 16, true))))
    expect(values(output(result, 'i8_out'))).toEqual(Array.from(i8, (v) => Number(doubledWrapped(v, 8, true))))
    expect(values(output(result, 'u8_out'))).toEqual(Array.from(u8, (v) => Number(doubledWrapped(v, 8, false))))
    expect(values(output(result, 'b_out'))).toEqual(Array.from(b, (v) => (v ? 0 : 1)))

    // The batch dimension is symbolic: a single row runs through the same session.
    const single = await session.run(feeds(1))
    expect(output(single, 'i64_out').dims).toEqual([1, 4])
    expect(values(output(single, 'i64_out'))).toEqual(Array.from(i64.slice(0, 4), (v) => doubledWrapped(v, 64, true)))
    expect(values(output(single, 'b_out'))).toEqual([0, 1, 0, 0])
  })
})

describe('tinyClassifierModel', () => {
  const model = tinyClassifierModel()
  let session: ort.InferenceSession

  beforeAll(async () => {
    session = await ort.InferenceSession.create(model.bytes)
  })

  it('declares x[N,4] → probs[N,3]', () => {
    expect(metadata(session.inputMetadata)).toEqual([{ name: 'x', type: 'float32', shape: ['N', 4] }])
    expect(metadata(session.outputMetadata)).toEqual([{ name: 'probs', type: 'float32', shape: ['N', 3] }])
  })

  it('outputs a probability distribution per row, matching an independent softmax(x·W)', async () => {
    const rows = [
      [3, 0, 0, 1],
      [0, 1, 0.5, -2],
      [0.1, 0.2, 4, 0],
    ]
    const x = new Float32Array(rows.flat())
    const result = await session.run({ x: new ort.Tensor('float32', x, [rows.length, 4]) })
    const probs = output(result, 'probs')
    expect(probs.dims).toEqual([3, 3])
    const p = values(probs).map(Number)

    rows.forEach((row, r) => {
      const logits = [0, 1, 2].map((c) => row.reduce((sum, v, k) => sum + v * model.weights[k * 3 + c]!, 0))
      const max = Math.max(...logits)
      const exps = logits.map((l) => Math.exp(l - max))
      const total = exps.reduce((a, e) => a + e, 0)
      const got = p.slice(r * 3, r * 3 + 3)
      expect(got.reduce((a, v) => a + v, 0)).toBeCloseTo(1, 6)
      got.forEach((v, c) => expect(v).toBeCloseTo(exps[c]! / total, 6))
      // The winning class is the largest of the first three features, by construction of W.
      expect(got.indexOf(Math.max(...got))).toBe(row.slice(0, 3).indexOf(Math.max(...row.slice(0, 3))))
    })
  })
})

describe('buildModel', () => {
  it('carries the unsigned types, int64 initializers, and int/ints/float attributes', async () => {
    const io = (name: string, datatype: ValueSpec['datatype'], shape: ValueSpec['shape']): ValueSpec => ({ name, datatype, shape })
    const bias = new BigInt64Array([-(2n ** 40n), 2n ** 55n + 1n])
    const bytes = buildModel({
      opset: 14,
      inputs: [io('u16', 'UINT16', ['B', 2]), io('u32', 'UINT32', ['B', 2]), io('u64', 'UINT64', ['B', 2]), io('i64', 'INT64', ['B', 2]), io('m', 'FP32', [2, 3])],
      outputs: [
        io('u16_out', 'UINT16', ['B', 2]),
        io('u32_out', 'UINT32', ['B', 2]),
        io('u64_out', 'UINT64', ['B', 2]),
        io('i64_biased', 'INT64', ['B', 2]),
        io('m_t', 'FP32', [3, 2]),
        io('m_leaky', 'FP32', [2, 3]),
        io('m_sum', 'FP32', [2]),
      ],
      initializers: [{ name: 'bias', datatype: 'INT64', dims: [2], data: rawData(bias) }],
      nodes: [
        { opType: 'Add', inputs: ['u16', 'u16'], outputs: ['u16_out'] },
        { opType: 'Add', inputs: ['u32', 'u32'], outputs: ['u32_out'] },
        { opType: 'Add', inputs: ['u64', 'u64'], outputs: ['u64_out'] },
        { opType: 'Add', inputs: ['i64', 'bias'], outputs: ['i64_biased'] },
        { opType: 'Transpose', inputs: ['m'], outputs: ['m_t'], attributes: { perm: { ints: [1, 0] } } },
        { opType: 'LeakyRelu', inputs: ['m'], outputs: ['m_leaky'], attributes: { alpha: { float: 0.25 } } },
        // keepdims defaults to 1, so this only passes if an int attribute of 0 is still written.
        { opType: 'ReduceL1', inputs: ['m'], outputs: ['m_sum'], attributes: { axes: { ints: [-1] }, keepdims: { int: 0 } } },
      ],
    })
    const session = await ort.InferenceSession.create(bytes)
    expect(metadata(session.inputMetadata).map((m) => m.type)).toEqual(['uint16', 'uint32', 'uint64', 'int64', 'float32'])

    const u64 = new BigUint64Array([2n ** 62n + 1n, 2n ** 63n + 5n])
    const m = new Float32Array([1, -2, 3, -4, 5, -6])
    const result = await session.run({
      u16: new ort.Tensor('uint16', new Uint16Array([40000, 7]), [1, 2]),
      u32: new ort.Tensor('uint32', new Uint32Array([3_000_000_000, 9]), [1, 2]),
      u64: new ort.Tensor('uint64', u64, [1, 2]),
      i64: new ort.Tensor('int64', new BigInt64Array([1n, -1n]), [1, 2]),
      m: new ort.Tensor('float32', m, [2, 3]),
    })
    expect(values(output(result, 'u16_out'))).toEqual([Number(BigInt.asUintN(16, 80000n)), 14])
    expect(values(output(result, 'u32_out'))).toEqual([Number(BigInt.asUintN(32, 6_000_000_000n)), 18])
    expect(values(output(result, 'u64_out'))).toEqual(Array.from(u64, (v) => doubledWrapped(v, 64, false)))
    expect(values(output(result, 'i64_biased'))).toEqual([1n - 2n ** 40n, 2n ** 55n])
    expect(values(output(result, 'm_t'))).toEqual([1, -4, -2, 5, 3, -6])
    expect(values(output(result, 'm_leaky'))).toEqual([1, -0.5, 3, -1, 5, -1.5])
    expect(output(result, 'm_sum').dims).toEqual([2])
    expect(values(output(result, 'm_sum'))).toEqual([6, 15])
  })

  it('is refused by onnxruntime when an op does not accept the type at that opset', async () => {
    // Why kitchenSinkModel uses opset 14: Add-13 has no int8 (nor int16/uint8) kernel.
    const spec = (opset: number) =>
      buildModel({
        opset,
        inputs: [{ name: 'a', datatype: 'INT8', shape: [2] }],
        outputs: [{ name: 'y', datatype: 'INT8', shape: [2] }],
        nodes: [{ opType: 'Add', inputs: ['a', 'a'], outputs: ['y'] }],
      })
    await expect(ort.InferenceSession.create(spec(13))).rejects.toThrow(/tensor\(int8\)/)
    await expect(ort.InferenceSession.create(spec(14))).resolves.toBeDefined()
  })
})
