import { readFileSync } from 'node:fs'
import * as ort from 'onnxruntime-node'
import { describe, expect, it } from 'vitest'
import { bundledModelPath } from '../models/bundled.js'
import { compareModels, sampleFeeds } from './evaluate.js'
import { convModel, matmulGemmModel, modelBytes, randomValues } from './fixtures.js'
import { node } from './graph.js'
import { OnnxFormatError, decodeModel, floatAttribute, floatTensor, intsAttribute, intAttribute, tensorTypeOf } from './onnx-proto.js'
import { QuantizeError, preprocessModel, quantizeModel, type QuantizeOptions } from './quantize.js'

async function run(bytes: Uint8Array, feeds: Record<string, ort.Tensor>): Promise<Record<string, Float32Array>> {
  const session = await ort.InferenceSession.create(bytes, { graphOptimizationLevel: 'all' })
  try {
    const out = await session.run(feeds)
    return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, v.data as Float32Array]))
  } finally {
    await session.release()
  }
}

function maxAbs(values: Float32Array): number {
  return values.reduce((m, v) => Math.max(m, Math.abs(v)), 0)
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length)
  return a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0)
}

describe('quantizeModel on hand-built MatMul/Gemm models', () => {
  const { bytes, reference } = matmulGemmModel()
  const rows = 32
  const x = randomValues(rows * 16, 99)
  const expected = reference(x, rows)

  it.each<[string, QuantizeOptions]>([
    ['per-tensor int8', {}],
    ['per-channel int8', { perChannel: true }],
    ['per-tensor uint8', { weightType: 'uint8' }],
  ])('%s outputs stay within 2%% of the independent fp32 result', async (_, options) => {
    const { bytes: int8, report } = await quantizeModel(bytes, options)
    expect(report.quantized).toEqual({ MatMul: 2, Gemm: 1 })
    const model = decodeModel(int8)
    const graph = model.graph!
    // Graph interface unchanged; fused contrib kernel, with its opset imported.
    expect(graph.input.map((v) => v.name)).toEqual(['x'])
    expect(graph.output.map((v) => [v.name, tensorTypeOf(v)?.elemType])).toEqual([['y', 1], ['z', 1]])
    expect(graph.node.map((n) => n.opType)).toEqual(['DynamicQuantizeMatMul', 'DynamicQuantizeMatMul', 'DynamicQuantizeMatMul'])
    expect(model.opsetImport).toContainEqual(expect.objectContaining({ domain: 'com.microsoft', version: 1 }))
    // The shared weight is quantized once, and the fp32 weights are gone.
    expect(graph.initializer.filter((t) => t.name?.startsWith('w1_quantized'))).toHaveLength(1)
    expect(graph.initializer.some((t) => t.name === 'w1' || t.name === 'b')).toBe(false)
    const out = await run(int8, { x: new ort.Tensor('float32', x, [rows, 16]) })
    expect(maxDiff(out.y!, expected.y)).toBeLessThan(0.02 * maxAbs(expected.y))
    expect(maxDiff(out.z!, expected.z)).toBeLessThan(0.02 * maxAbs(expected.z))
  })

  it('shrinks the weights about 4x', async () => {
    const big = modelBytes([node('MatMul', ['x', 'w'], ['y'], 'mm')], [floatTensor('w', [256, 256], randomValues(256 * 256, 5))], ['x'], ['y'])
    const { report } = await quantizeModel(big)
    expect(report.int8Bytes / report.fp32Bytes).toBeLessThan(0.26)
  })
})

describe('quantizeModel on a hand-built Conv → BatchNorm → Relu → Conv model', () => {
  const { bytes, reference } = convModel()
  const inputs = Array.from({ length: 8 }, (_, i) => randomValues(4 * 8 * 8, 300 + i))

  it.each<[string, QuantizeOptions]>([
    ['dynamic, per tensor', {}],
    ['dynamic, per channel', { perChannel: true }],
    ['static, per channel', { perChannel: true, calibration: inputs.slice(0, 4).map((x) => ({ x: new ort.Tensor('float32', x, [1, 4, 8, 8]) })) }],
  ])('%s stays within 4%% of the independent fp32 result', async (_, options) => {
    const { bytes: int8, report } = await quantizeModel(bytes, options)
    expect(report.foldedBatchNorms).toBe(1)
    expect(report.quantized.Conv).toBe(2)
    const ops = decodeModel(int8).graph!.node.map((n) => n.opType)
    expect(ops).not.toContain('BatchNormalization')
    expect(ops).toContain(options.calibration ? 'QuantizeLinear' : 'ConvInteger')
    for (const x of inputs.slice(4)) {
      const expected = reference(x)
      const out = await run(int8, { x: new ort.Tensor('float32', x, [1, 4, 8, 8]) })
      expect(maxDiff(out.y!, expected)).toBeLessThan(0.04 * maxAbs(expected))
    }
  })

  it('leaves excluded nodes in fp32 and says why', async () => {
    const { report } = await quantizeModel(bytes, { exclude: ['conv2'], excludeFirst: true })
    expect(report.nodes).toEqual([
      { name: 'conv1', opType: 'Conv', skipped: 'reads a graph input' },
      { name: 'conv2', opType: 'Conv', skipped: 'excluded' },
    ])
  })
})

describe('opset upgrade', () => {
  it('rewrites opset-9 Slice and Clip attributes as inputs, keeping the results', async () => {
    const bytes = modelBytes(
      [
        node('Slice', ['x'], ['s'], 'slice', [intsAttribute('starts', [1]), intsAttribute('ends', [Number.MAX_SAFE_INTEGER]), intsAttribute('axes', [1])]),
        node('Clip', ['s'], ['c'], 'clip', [floatAttribute('min', -0.5), floatAttribute('max', 0.5)]),
        node('MatMul', ['c', 'w'], ['y'], 'mm'),
      ],
      [floatTensor('w', [7, 3], randomValues(21, 3))],
      ['x'],
      ['y'],
      9,
    )
    const x = new ort.Tensor('float32', randomValues(2 * 8, 4), [2, 8])
    const fp32 = await run(bytes, { x })
    const { bytes: int8 } = await quantizeModel(bytes)
    const model = decodeModel(int8)
    expect(model.opsetImport.find((o) => o.domain === '')?.version).toBe(11)
    expect(model.graph!.node.find((n) => n.opType === 'Slice')?.input).toHaveLength(4)
    expect(model.graph!.node.find((n) => n.opType === 'Clip')?.input).toHaveLength(3)
    const int8Out = await run(int8, { x })
    expect(maxDiff(int8Out.y!, fp32.y!)).toBeLessThan(0.03 * maxAbs(fp32.y!))
  })

  it('refuses a model with an op whose meaning changed (TopK) with a QuantizeError', async () => {
    const bytes = modelBytes([node('TopK', ['x'], ['v', 'i'], 'topk', [intAttribute('k', 2)])], [], ['x'], ['v'], 9)
    await expect(quantizeModel(bytes)).rejects.toThrow(QuantizeError)
    await expect(quantizeModel(bytes)).rejects.toThrow(/TopK/)
  })
})

describe('quantizeModel on bad input', () => {
  it('throws OnnxFormatError for a file that is not ONNX, or a truncated one', async () => {
    await expect(quantizeModel(new TextEncoder().encode('hello, world'))).rejects.toThrow(OnnxFormatError)
    const cls = readFileSync(bundledModelPath('ppocr-cls'))
    await expect(quantizeModel(cls.subarray(0, cls.length >> 1))).rejects.toThrow(/truncated/)
  })
})

describe('the bundled PaddleOCR direction classifier (ppocr-cls)', () => {
  const fp32 = readFileSync(bundledModelPath('ppocr-cls'))
  const specs = [{ name: 'x', shape: [1, 3, 48, 192], dynamicBatch: true }]
  const samples = sampleFeeds(specs, 200, 1)

  it('keeps its outputs when only rewritten (BatchNorm folding, hard-swish)', async () => {
    const rewritten = preprocessModel(fp32)
    expect(decodeModel(rewritten).graph!.node.length).toBeLessThan(decodeModel(fp32).graph!.node.length)
    const c = await compareModels(fp32, rewritten, samples.slice(0, 20))
    expect(c.top1Agreement).toBe(1)
    expect(c.maxAbsError).toBeLessThan(1e-4)
  })

  it('quantized (dynamic, per channel, stem and depthwise in fp32) agrees with fp32 on ≥ 99% of 200 seeded text lines', async () => {
    const { bytes, report } = await quantizeModel(fp32, { perChannel: true, excludeDepthwise: true, excludeFirst: true })
    expect(report.quantized.Conv).toBeGreaterThan(30)
    expect(report.int8Bytes).toBeLessThan(report.fp32Bytes * 0.6)
    const c = await compareModels(fp32, bytes, samples)
    // The softmax output: a probability error bound, not just the arg-max.
    expect(c.top1Agreement).toBeGreaterThanOrEqual(0.99)
    expect(c.maxAbsError).toBeLessThan(0.3)
    expect(c.outputs[0]!.meanAbsError).toBeLessThan(0.03)
  })

  it('quantized statically (calibrated QDQ) loads and mostly agrees', async () => {
    const calibration = sampleFeeds(specs, 16, 1_000_004)
    const { bytes, report } = await quantizeModel(fp32, { perChannel: true, calibration })
    expect(report.mode).toBe('static')
    const ops = new Set(decodeModel(bytes).graph!.node.map((n) => n.opType))
    expect(ops).toContain('QuantizeLinear')
    expect(ops).toContain('DequantizeLinear')
    const c = await compareModels(fp32, bytes, samples.slice(0, 100))
    expect(c.top1Agreement).toBeGreaterThanOrEqual(0.95)
  })
})
