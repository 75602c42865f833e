import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { buildModel, rawData, type Dim } from '../../../test/helpers/onnx-model.js'
import { bundledModelPath } from '../models/bundled.js'
import { EvaluationError, compareModels, sampleFeeds, type InputSpec } from './evaluate.js'
import { quantizeModel, type QuantizeOptions } from './quantize.js'
import { SEARCH_POSITIONS, searchFp32Layers } from './search.js'

/** probs = Softmax(x · W) over the last axis: x [N, …rows, 16], W [16, 8]: 8 classes per row. */
function matmulSoftmaxModel(rows: Dim[]): Uint8Array {
  return buildModel({
    inputs: [{ name: 'x', datatype: 'FP32', shape: ['N', ...rows, 16] }],
    outputs: [{ name: 'probs', datatype: 'FP32', shape: ['N', ...rows, 8] }],
    initializers: [{ name: 'W', datatype: 'FP32', dims: [16, 8], data: rawData(Float32Array.from({ length: 128 }, (_, i) => Math.sin(i * 1.3))) }],
    nodes: [
      { opType: 'MatMul', inputs: ['x', 'W'], outputs: ['logits'] },
      { opType: 'Softmax', inputs: ['logits'], outputs: ['probs'], attributes: { axis: { int: -1 } } },
    ],
  })
}

describe('searchFp32Layers (accuracy-aware fallback) on PaddleOCR cls', () => {
  const fp32 = readFileSync(bundledModelPath('ppocr-cls'))
  const specs: InputSpec[] = [{ name: 'x', shape: [1, 3, 48, 192], dynamicBatch: true, kind: 'text-line' }]
  // Dynamic per-tensor int8: every layer quantized flips a few of these text lines' direction.
  const options: QuantizeOptions = {}
  const feeds = sampleFeeds(specs, 60, 5)
  const searchInputs = { sampleFeeds: (count: number) => sampleFeeds(specs, count, 5), samples: 60 }
  const threshold = 1

  const agreementWith = async (exclude: readonly string[]) => {
    const { bytes } = await quantizeModel(fp32, { ...options, exclude })
    return (await compareModels(fp32, bytes, feeds)).top1Agreement!
  }

  it('leaves the shortest prefix of its ranking in fp32 that meets the threshold, measured again here', async () => {
    const result = await searchFp32Layers(fp32, options, { threshold, ...searchInputs })
    // The premise: quantizing everything misses the threshold on these inputs.
    expect(await agreementWith([])).toBeLessThan(threshold)
    expect(result.quantizedAgreement).toBe(await agreementWith([]))
    expect(result).toMatchObject({ samples: 60, positions: 60, met: true })

    const k = result.fp32Layers.length
    expect(k).toBeGreaterThan(0)
    // Worth searching: far fewer than all layers go back to fp32.
    expect(k).toBeLessThan(result.candidates / 2)
    expect(result.ranking).toHaveLength(result.candidates)
    expect(result.fp32Layers).toEqual(result.ranking.slice(0, k).map((l) => l.name))
    // Quantized again here with those layers left fp32: the threshold is met…
    expect(await agreementWith(result.fp32Layers)).toBeGreaterThanOrEqual(threshold)
    expect(result.agreement).toBe(await agreementWith(result.fp32Layers))
    // …and with any shorter prefix of the ranking it is not.
    for (let j = 0; j < k; j++) expect(await agreementWith(result.fp32Layers.slice(0, j)), `${j} layers`).toBeLessThan(threshold)

    // The ranking: most sensitive first, and the first one's measure is what quantizing it alone gives.
    for (let i = 1; i < result.ranking.length; i++) {
      const [a, b] = [result.ranking[i - 1]!, result.ranking[i]!]
      expect(a.agreement < b.agreement || (a.agreement === b.agreement && a.meanAbsError >= b.meanAbsError)).toBe(true)
    }
    const first = result.ranking[0]!
    expect(await agreementWith(result.ranking.slice(1).map((l) => l.name))).toBe(first.agreement)
  }, 120_000)

  it('changes nothing when the quantized model already meets the threshold', async () => {
    const result = await searchFp32Layers(fp32, options, { threshold: 0.5, ...searchInputs })
    expect(result).toMatchObject({ fp32Layers: [], ranking: [], met: true, evaluations: 1 })
    expect(result.agreement).toBe(result.quantizedAgreement)
    // Every quantized Conv and MatMul counts as a candidate, searched or not.
    const { report } = await quantizeModel(fp32, options)
    expect(result.candidates).toBe(report.nodes.filter((n) => n.skipped === undefined).length)
  }, 60_000)

  it('calibrates once: ranges cached by earlier calls give the model a fresh calibration gives', async () => {
    const calibration = sampleFeeds(specs, 8, 77)
    const cache = new Map()
    const convs = (await quantizeModel(fp32, options)).report.nodes.filter((n) => n.opType === 'Conv').map((n) => n.name)
    const partial = await quantizeModel(fp32, { calibration, calibrationCache: cache, exclude: convs.slice(2) })
    const cachedCount = cache.size
    expect(cachedCount).toBeGreaterThan(0)
    const fromCache = await quantizeModel(fp32, { calibration, calibrationCache: cache })
    // The second call measured what the first had not (the tensors of the layers it left fp32).
    expect(cache.size).toBeGreaterThan(cachedCount)
    const fresh = await quantizeModel(fp32, { calibration })
    expect(Buffer.from(fromCache.bytes).equals(Buffer.from(fresh.bytes))).toBe(true)
    expect(Buffer.from(partial.bytes).equals(Buffer.from(fresh.bytes))).toBe(false)
  }, 60_000)
})

describe('searchFp32Layers: how many search inputs', () => {
  const threshold = 0 // met at once: these tests are about the inputs, not the fallback
  it(`takes enough for ${SEARCH_POSITIONS} class positions: one per input for a classifier (capped at 500)…`, async () => {
    const result = await searchFp32Layers(matmulSoftmaxModel([]), {}, { threshold, sampleFeeds: (n) => sampleFeeds([{ name: 'x', shape: [1, 16], dynamicBatch: true, kind: 'normal' }], n, 3) })
    expect(result).toMatchObject({ samples: 500, positions: 500 })
  })

  it('…and one per time step for a sequence model', async () => {
    const result = await searchFp32Layers(matmulSoftmaxModel([25]), {}, { threshold, sampleFeeds: (n) => sampleFeeds([{ name: 'x', shape: [1, 25, 16], dynamicBatch: true, kind: 'normal' }], n, 3) })
    expect(result).toMatchObject({ samples: 40, positions: 1_000 })
  })

  it('…and one per label for a model whose only output is an ArgMax label (compared for equality)', async () => {
    const labelOnly = buildModel({
      inputs: [{ name: 'x', datatype: 'FP32', shape: ['N', 16] }],
      outputs: [{ name: 'label', datatype: 'INT64', shape: ['N'] }],
      initializers: [{ name: 'W', datatype: 'FP32', dims: [16, 8], data: rawData(Float32Array.from({ length: 128 }, (_, i) => Math.sin(i * 1.3))) }],
      nodes: [
        { opType: 'MatMul', inputs: ['x', 'W'], outputs: ['logits'] },
        { opType: 'ArgMax', inputs: ['logits'], outputs: ['label'], attributes: { axis: { int: -1 }, keepdims: { int: 0 } } },
      ],
    })
    const result = await searchFp32Layers(labelOnly, {}, { threshold, sampleFeeds: (n) => sampleFeeds([{ name: 'x', shape: [1, 16], dynamicBatch: true, kind: 'normal' }], n, 3) })
    expect(result).toMatchObject({ samples: 500, positions: 500 })
  })

  it('refuses a model whose outputs have no class axis: it has no agreement to search by', async () => {
    // A regressor, out = x · W with one value per row: no class axis to take arg-maxes over.
    const model = buildModel({
      inputs: [{ name: 'x', datatype: 'FP32', shape: ['N', 16] }],
      outputs: [{ name: 'out', datatype: 'FP32', shape: ['N', 1] }],
      initializers: [{ name: 'W', datatype: 'FP32', dims: [16, 1], data: rawData(Float32Array.from({ length: 16 }, (_, i) => Math.cos(i))) }],
      nodes: [{ opType: 'MatMul', inputs: ['x', 'W'], outputs: ['out'] }],
    })
    const search = { threshold: 0.99, sampleFeeds: (n: number) => sampleFeeds([{ name: 'x', shape: [1, 16], dynamicBatch: true, kind: 'normal' }], n, 1) }
    await expect(searchFp32Layers(model, {}, search)).rejects.toThrow(EvaluationError)
    await expect(searchFp32Layers(model, {}, search)).rejects.toThrow(/no output of this model has a class axis/)
  })
})
