import * as ort from 'onnxruntime-node'
import { describe, expect, it } from 'vitest'
import { bytesOf } from '@depinfer/shared'
import { buildModel } from '../../../test/helpers/onnx-model.js'
import { InvalidJobInputError, namedDimensionMismatch, runModel } from './run-job.js'

describe('runModel', () => {
  it('feeds inputs named like Object.prototype members (`__proto__`, `constructor`) as inputs, and answers outputs named so', async () => {
    const bytes = buildModel({
      inputs: [
        { name: '__proto__', datatype: 'FP32', shape: ['N', 2] },
        { name: 'constructor', datatype: 'FP32', shape: ['N', 2] },
      ],
      outputs: [{ name: 'toString', datatype: 'FP32', shape: ['N', 2] }],
      nodes: [{ opType: 'Add', inputs: ['__proto__', 'constructor'], outputs: ['toString'] }],
    })
    const session = await ort.InferenceSession.create(bytes)
    try {
      const [sum, ...rest] = await runModel(
        session,
        [
          { name: '__proto__', datatype: 'FP32', shape: [1, 2], data: bytesOf(new Float32Array([1, 2])) },
          { name: 'constructor', datatype: 'FP32', shape: [1, 2], data: bytesOf(new Float32Array([3, 4])) },
        ],
        [],
      )
      expect(rest).toEqual([])
      expect(sum).toMatchObject({ name: 'toString', datatype: 'FP32', shape: [1, 2] })
      expect(Array.from(new Float32Array(sum!.data.slice().buffer))).toEqual([4, 6])
    } finally {
      await session.release()
    }
  })

  it('names the inputs that disagree on a named dimension when onnxruntime refuses the job, which its own words do not', async () => {
    // ids [batch, sequence] + mask [batch, sequence]: token ids and their attention mask.
    const bytes = buildModel({
      inputs: [
        { name: 'input_ids', datatype: 'FP32', shape: ['batch', 'sequence'] },
        { name: 'attention_mask', datatype: 'FP32', shape: ['batch', 'sequence'] },
      ],
      outputs: [{ name: 'masked', datatype: 'FP32', shape: ['batch', 'sequence'] }],
      nodes: [{ opType: 'Mul', inputs: ['input_ids', 'attention_mask'], outputs: ['masked'] }],
    })
    const session = await ort.InferenceSession.create(bytes, { logSeverityLevel: 4 })
    const tensor = (name: string, length: number) => ({ name, datatype: 'FP32' as const, shape: [1, length], data: bytesOf(new Float32Array(length).fill(1)) })
    try {
      const refused = runModel(session, [tensor('input_ids', 3), tensor('attention_mask', 4)], [])
      await expect(refused).rejects.toThrow(InvalidJobInputError)
      await expect(refused).rejects.toThrow(
        /^onnxruntime: .*\("attention_mask" is 4 along "sequence" \(dimension 1\), where "input_ids" is 3 \(dimension 1\): inputs that share a named dimension must agree on its size\)$/,
      )
      // Agreeing sizes run; a named dimension is not held against a graph that can run.
      const [masked] = await runModel(session, [tensor('input_ids', 4), tensor('attention_mask', 4)], [])
      expect(masked!.shape).toEqual([1, 4])
    } finally {
      await session.release()
    }
  })

  it('says nothing of named dimensions when the inputs agree on them and onnxruntime refuses for another reason', () => {
    const metadata = [
      { name: 'a', isTensor: true, type: 'float32', shape: ['batch', 'sequence'] },
      { name: 'b', isTensor: true, type: 'float32', shape: ['batch', 4] },
    ] as const satisfies readonly ort.InferenceSession.ValueMetadata[]
    const input = (name: string, shape: number[]) => ({ name, datatype: 'FP32' as const, shape, data: new Uint8Array(0) })
    expect(namedDimensionMismatch(metadata, [input('a', [2, 7]), input('b', [2, 5])])).toBeUndefined()
    expect(namedDimensionMismatch(metadata, [input('a', [2, 7]), input('b', [3, 4])])).toBe(
      '"b" is 3 along "batch" (dimension 0), where "a" is 2 (dimension 0): inputs that share a named dimension must agree on its size',
    )
  })

  it('answers as onnxruntime does on the caller\'s own array, also for an input that arrives off an aligned boundary of its frame', async () => {
    // A sum along each row: onnxruntime's CPU kernel vectorizes from the first aligned address, so
    // the same row summed from a view 4 bytes into a buffer comes out in its last bit otherwise
    // (1.6338196992874146 where a fresh array gives 1.633819580078125, on x86-64 with AVX2).
    const bytes = buildModel({
      inputs: [{ name: 'x', datatype: 'FP32', shape: ['N', 4] }],
      outputs: [{ name: 's', datatype: 'FP32', shape: ['N'] }],
      nodes: [{ opType: 'ReduceSum', inputs: ['x', 'axes'], outputs: ['s'], attributes: { keepdims: { int: 0 } } }],
      initializers: [{ name: 'axes', datatype: 'INT64', dims: [1], data: bytesOf(BigInt64Array.of(-1n)) }],
    })
    const session = await ort.InferenceSession.create(bytes)
    try {
      let seed = 7
      const random = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff) * 4 - 2
      const rows = [Float32Array.of(0.7178459167480469, 0.6924934387207031, -1.3092079162597656, 1.5326882600784302)]
      for (let i = 0; i < 63; i++) rows.push(Float32Array.from({ length: 4 }, random))
      for (const row of rows) {
        const direct = (await session.run({ x: new ort.Tensor('float32', row, [1, 4]) })).s!.data
        for (const offset of [4, 8, 12]) {
          // As in a job's frame: the input's bytes somewhere inside a larger buffer.
          const frame = new Uint8Array(offset + row.byteLength + 4)
          frame.set(bytesOf(row), offset)
          const [sum] = await runModel(session, [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: frame.subarray(offset, offset + row.byteLength) }], [])
          expect({ row: Array.from(row), offset, sum: new Float32Array(sum!.data.slice().buffer)[0] }).toEqual({ row: Array.from(row), offset, sum: direct[0] })
        }
      }
    } finally {
      await session.release()
    }
  })
})
