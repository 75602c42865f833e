import * as ort from 'onnxruntime-node'
import { describe, expect, it } from 'vitest'
import { inputSpecs, latencyBatches, sampleFeeds, withBatch } from './evaluate.js'
import { buildModel } from '../../../test/helpers/onnx-model.js'

describe('sample inputs for a model', () => {
  // Two inputs sharing the named dimension `batch` in different places (as a recurrent model's
  // input and its state do): the graph concatenates them row by row, so it runs only when both
  // get the same size for it.
  const model = buildModel({
    inputs: [
      { name: 'x', datatype: 'FP32', shape: ['batch', 3] },
      { name: 'h', datatype: 'FP32', shape: [3, 'batch'] },
    ],
    outputs: [{ name: 'y', datatype: 'FP32', shape: ['batch', 6] }],
    nodes: [
      { opType: 'Transpose', inputs: ['h'], outputs: ['hT'], attributes: { perm: { ints: [1, 0] } } },
      { opType: 'Concat', inputs: ['x', 'hT'], outputs: ['y'], attributes: { axis: { int: 1 } } },
    ],
  })

  /** The shape of `y` when onnxruntime runs the model on a sample made for `specs`. */
  async function outputShapeOnSamples(specs: Parameters<typeof sampleFeeds>[0]): Promise<readonly number[]> {
    const session = await ort.InferenceSession.create(model)
    try {
      const [feeds] = sampleFeeds(specs, 1, 7)
      return (await session.run(feeds!)).y!.dims
    } finally {
      await session.release()
    }
  }

  it('gives dimensions of the same name one size, so the model runs on the samples', async () => {
    const specs = await inputSpecs(model)
    expect(specs.map((spec) => spec.shape)).toEqual([[1, 3], [3, 1]])
    expect(await outputShapeOnSamples(specs)).toEqual([1, 6])
  })

  it('runs a batch of 8 with the batch in every dimension named as it is', async () => {
    const specs = await inputSpecs(model)
    expect(latencyBatches(specs)).toEqual([1, 8])
    const batched = withBatch(specs, 8)!
    expect(batched.map((spec) => spec.shape)).toEqual([[8, 3], [3, 8]])
    expect(await outputShapeOnSamples(batched)).toEqual([8, 6])
  })

  it('takes the size of a named dimension from --shape for the other inputs too', async () => {
    const specs = await inputSpecs(model, new Map([['h', [3, 4]]]))
    expect(specs.map((spec) => spec.shape)).toEqual([[4, 3], [3, 4]])
  })
})
