import * as ort from 'onnxruntime-node'
import { describe, expect, it } from 'vitest'
import { bytesOf } from '@depinfer/shared'
import { buildModel } from '../../../test/helpers/onnx-model.js'
import { runModel } from './run-job.js'

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
})
