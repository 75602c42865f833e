import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { buildModel, rawData } from '../../../test/helpers/onnx-model.js'
import { bundledModelPath } from '../models/bundled.js'
import { EvaluationError, compareModels, sampleFeeds, type InputSpec } from './evaluate.js'
import { quantizeModel, type QuantizeOptions } from './quantize.js'
import { searchFp32Layers } from './search.js'

describe('searchFp32Layers (accuracy-aware fallback) on PaddleOCR cls', () => {
  const fp32 = readFileSync(bundledModelPath('ppocr-cls'))
  const specs: InputSpec[] = [{ name: 'x', shape: [1, 3, 48, 192], dynamicBatch: true, kind: 'text-line' }]
  // Dynamic per-tensor int8: every layer quantized flips a few of these text lines' direction.
  const options: QuantizeOptions = {}
  const feeds = sampleFeeds(specs, 60, 5)
  const threshold = 1

  const agreementWith = async (exclude: readonly string[]) => {
    const { bytes } = await quantizeModel(fp32, { ...options, exclude })
    return (await compareModels(fp32, bytes, feeds)).top1Agreement!
  }

  it('leaves the fewest of its most sensitive layers in fp32 that meet the threshold, measured again here', async () => {
    const result = await searchFp32Layers(fp32, options, { threshold, feeds })
    // The premise: quantizing everything misses the threshold on these inputs.
    expect(await agreementWith([])).toBeLessThan(threshold)
    expect(result.fullAgreement).toBeLessThan(threshold)

    expect(result.fp32Layers.length).toBeGreaterThan(0)
    // Worth searching: far fewer than all layers go back to fp32.
    expect(result.fp32Layers.length).toBeLessThan(result.ranking.length / 2)
    expect(result.fp32Layers).toEqual(result.ranking.slice(0, result.fp32Layers.length).map((l) => l.name))
    // Quantized again here with those layers left fp32: the threshold is met…
    expect(await agreementWith(result.fp32Layers)).toBeGreaterThanOrEqual(threshold)
    expect(result.agreement).toBe(await agreementWith(result.fp32Layers))
    // …and with one fewer of them it is not.
    expect(await agreementWith(result.fp32Layers.slice(0, -1))).toBeLessThan(threshold)

    // The ranking: most sensitive first, and the first one's measure is what quantizing it alone gives.
    for (let i = 1; i < result.ranking.length; i++) {
      const [a, b] = [result.ranking[i - 1]!, result.ranking[i]!]
      expect(a.agreement < b.agreement || (a.agreement === b.agreement && a.meanAbsError >= b.meanAbsError)).toBe(true)
    }
    const first = result.ranking[0]!
    const others = result.ranking.slice(1).map((l) => l.name)
    expect(await agreementWith(others)).toBe(first.agreement)
  }, 120_000)

  it('changes nothing when the fully quantized model already meets the threshold', async () => {
    const result = await searchFp32Layers(fp32, options, { threshold: 0.5, feeds })
    expect(result.fp32Layers).toEqual([])
    expect(result.ranking).toEqual([])
    expect(result.agreement).toBe(result.fullAgreement)
    expect(result.evaluations).toBe(1)
  }, 60_000)

  it('refuses a model whose outputs have no class axis: it has no agreement to search by', async () => {
    // A regressor, out = x · W with one value per row: no class axis to take arg-maxes over.
    const model = buildModel({
      inputs: [{ name: 'x', datatype: 'FP32', shape: ['N', 16] }],
      outputs: [{ name: 'out', datatype: 'FP32', shape: ['N', 1] }],
      initializers: [{ name: 'W', datatype: 'FP32', dims: [16, 1], data: rawData(Float32Array.from({ length: 16 }, (_, i) => Math.cos(i))) }],
      nodes: [{ opType: 'MatMul', inputs: ['x', 'W'], outputs: ['out'] }],
    })
    const inputs = sampleFeeds([{ name: 'x', shape: [1, 16], dynamicBatch: true, kind: 'normal' }], 5, 1)
    await expect(searchFp32Layers(model, {}, { threshold: 0.99, feeds: inputs })).rejects.toThrow(EvaluationError)
    await expect(searchFp32Layers(model, {}, { threshold: 0.99, feeds: inputs })).rejects.toThrow(/no output of this model has a class axis/)
  })
})
