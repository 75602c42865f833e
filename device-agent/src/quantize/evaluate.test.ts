import * as ort from 'onnxruntime-node'
import { describe, expect, it } from 'vitest'
import { ClassOutputError, compareModels, inputSpecs, latencyBatches, sampleFeeds, withBatch } from './evaluate.js'
import { buildModel, classifierWithEmbeddingModel, rawData } from '../../../test/helpers/onnx-model.js'
import { quantizeModel } from './quantize.js'

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

describe('which outputs top-1 agreement is judged on', () => {
  // probs agrees with fp32 on every row, embedding's arg-max on about 1 row in 16 (the helper says why).
  const fp32 = classifierWithEmbeddingModel()
  const feeds = sampleFeeds([{ name: 'x', shape: [1, 4], dynamicBatch: true, kind: 'normal' }], 100, 1)
  const int8 = quantizeModel(fp32).then((q) => q.bytes)

  it('is every output with a class axis by default: the lowest agreement, an embedding\'s included', async () => {
    const c = await compareModels(fp32, await int8, feeds)
    expect(c.outputs.find((o) => o.name === 'probs')!.top1Agreement).toBe(1)
    expect(c.top1Agreement).toBeLessThan(0.2)
    expect(c).toMatchObject({ judgedOutputs: ['probs', 'embedding'], outputsNamed: false })
  })

  it('is the named class output alone: the others count for max abs error only', async () => {
    const c = await compareModels(fp32, await int8, feeds, undefined, ['probs'])
    expect(c).toMatchObject({ top1Agreement: 1, judgedOutputs: ['probs'], outputsNamed: true })
    // The embedding still shows its agreement and its errors.
    const embedding = c.outputs.find((o) => o.name === 'embedding')!
    expect(embedding.top1Agreement).toBeLessThan(0.2)
    expect(c.maxAbsError).toBe(embedding.maxAbsError)
    expect(c.maxAbsError).toBeGreaterThan(0)
  })

  it('refuses a name that is not an output, listing the outputs', async () => {
    const compare = compareModels(fp32, await int8, feeds, undefined, ['logits'])
    await expect(compare).rejects.toThrow(ClassOutputError)
    await expect(compare).rejects.toThrow('--class-output logits: the model has no output "logits" (its outputs: probs, embedding)')
  })

  it('refuses an output with no class axis to take arg-maxes over', async () => {
    const regressor = buildModel({
      inputs: [{ name: 'x', datatype: 'FP32', shape: ['N', 4] }],
      outputs: [{ name: 'score', datatype: 'FP32', shape: ['N', 1] }],
      initializers: [{ name: 'W', datatype: 'FP32', dims: [4, 1], data: rawData(Float32Array.of(1, -1, 0.5, 2)) }],
      nodes: [{ opType: 'MatMul', inputs: ['x', 'W'], outputs: ['score'] }],
    })
    await expect(compareModels(regressor, regressor, feeds, undefined, ['score'])).rejects.toThrow(/--class-output score: top-1 agreement needs a class axis.*score is \[N,1\]/)
  })
})
