/** The int8 variant the CLI publishes: made with the agent's quantizer, or read from a depinfer-quantize --json report. */
import { createHash } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { buildModel, classifierWithEmbeddingModel, elementwiseSoftmaxModel, matmulSoftmaxModel, rawData, tinyClassifierModel } from '../../test/helpers/onnx-model.js'
import { describeReport, Int8VariantError, quantizeForPublishing, readInt8Variant } from './int8.js'
import { temporaryDirectory } from '../../test/helpers/temporary-directory.js'

const dir = temporaryDirectory('depinfer-cli-int8-')
/** The fp32 model a variant is published with. */
const MODEL = { file: 'model.onnx', bytes: new Uint8Array(1_000).fill(7) }
const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex')
const write = (name: string, content: string | Uint8Array) => {
  const path = join(dir, name)
  writeFileSync(path, content)
  return path
}

describe('the int8 variant of a publish', () => {
  it('is quantized here and compared with fp32 on the quantizer\'s default samples', async () => {
    const variant = await quantizeForPublishing(tinyClassifierModel().bytes, 'tiny.onnx', 0.95)
    expect(variant.minAgreement).toBe(0.95)
    expect(variant.report.samples).toBe(200)
    expect(variant.report.top1Agreement).toBeGreaterThan(0.9)
    expect(variant.text).toMatch(/agreement: {3}200 seeded samples/)
    expect(variant.text).toMatch(/threshold: {3}top-1 ≥ 95\.00%/)
    expect(variant.text).not.toMatch(/latency/) // this machine's speed says nothing about the devices'
    expect((await quantizeForPublishing(tinyClassifierModel().bytes, 'tiny.onnx', undefined)).minAgreement).toBe(0.99)
  })

  it('compares an output that is not floating point (an ArgMax label) for equality, as its top-1 agreement', async () => {
    const { weights } = tinyClassifierModel()
    const labelled = buildModel({
      inputs: [{ name: 'features:0', datatype: 'FP32', shape: ['batch', 4] }],
      outputs: [{ name: 'probs:0', datatype: 'FP32', shape: ['batch', 3] }, { name: 'label', datatype: 'INT64', shape: ['batch'] }],
      initializers: [{ name: 'W', datatype: 'FP32', dims: [4, 3], data: rawData(weights) }],
      nodes: [
        { opType: 'MatMul', inputs: ['features:0', 'W'], outputs: ['logits'] },
        { opType: 'Softmax', inputs: ['logits'], outputs: ['probs:0'], attributes: { axis: { int: -1 } } },
        { opType: 'ArgMax', inputs: ['logits'], outputs: ['label'], attributes: { axis: { int: -1 }, keepdims: { int: 0 } } },
      ],
    })
    const variant = await quantizeForPublishing(labelled, 'labelled.onnx', 0.9)
    const probs = /probs:0: top-1 (\d+\.\d+)% of 200 positions/.exec(variant.text)
    const label = /label: equal in (\d+\.\d+)% of 200 elements \(not floating point: compared for equality\)/.exec(variant.text)
    expect(probs, variant.text).not.toBeNull()
    expect(label, variant.text).not.toBeNull()
    // The label is the arg-max of the logits the probabilities come from: the two agree alike.
    expect(label![1]).toBe(probs![1])
    expect(variant.report.top1Agreement * 100).toBeCloseTo(Number(probs![1]), 1)
  })

  describe('judged on the outputs named by --class-output', () => {
    // probs agrees with fp32 on every row, embedding's arg-max on about 1 row in 16 (the helper says why).
    const model = classifierWithEmbeddingModel()

    it('is judged on every class-like output without it: the embedding\'s agreement refuses the variant', async () => {
      const variant = await quantizeForPublishing(model, 'embedding.onnx', undefined)
      expect(variant.report.top1Agreement).toBeLessThan(0.2)
      expect(variant.text).toMatch(/^judged on: {3}probs, embedding: the lowest of their agreements/m)
      // Not sent when not named: an edge older than int8_class_output refuses the parameter.
      expect(variant.report).not.toHaveProperty('classOutputs')
      expect(describeReport(variant.report, variant.minAgreement)).toMatch(/^top-1 agreement \d+\.\d+% over 200 samples, .*devices run fp32$/)
    })

    it('is judged on the named output alone, and the published report says so', async () => {
      const variant = await quantizeForPublishing(model, 'embedding.onnx', undefined, { classOutputs: ['probs'] })
      expect(variant.report).toMatchObject({ top1Agreement: 1, classOutputs: ['probs'], samples: 200 })
      expect(variant.report.maxAbsError).toBeGreaterThan(0) // the embedding's errors still count
      expect(variant.text).toMatch(/^judged on: {3}probs \(--class-output\)/m)
      expect(describeReport(variant.report, variant.minAgreement)).toMatch(/^top-1 agreement 100\.00% on probs over 200 samples, .*≥ 99\.00%: devices run it$/)
    })

    it('refuses a name that is no output, as a usage error listing the outputs, before quantizing', async () => {
      const publishing = quantizeForPublishing(model, 'embedding.onnx', undefined, { classOutputs: ['logits'] })
      await expect(publishing).rejects.toThrow(Int8VariantError)
      await expect(publishing).rejects.toThrow('embedding.onnx: --class-output logits: the model has no output "logits" (its outputs: probs, embedding)')
      await expect(publishing).rejects.toMatchObject({ exitCode: 2 })
    })

    it('is read from a report made elsewhere (depinfer-quantize --class-output), and only when it was named there', async () => {
      const file = write('judged.onnx', new Uint8Array([1, 2, 3]))
      const comparison = { samples: 50, top1Agreement: 1, judgedOutputs: ['probs'], maxAbsError: 0.02 }
      const named = write('judged.json', JSON.stringify({ comparison: { ...comparison, outputsNamed: true } }))
      const variant = await readInt8Variant(file, named, undefined, MODEL)
      expect(variant.report).toEqual({ top1Agreement: 1, classOutputs: ['probs'], maxAbsError: 0.02, samples: 50 })
      expect(variant.text).toMatch(/top-1 agreement 100\.00% on probs over 50 samples/)
      const byDefault = write('default.json', JSON.stringify({ comparison: { ...comparison, outputsNamed: false } }))
      expect((await readInt8Variant(file, byDefault, undefined, MODEL)).report).toEqual({ top1Agreement: 1, maxAbsError: 0.02, samples: 50 })
    })
  })

  describe('on sample inputs of the sizes --shape gives', () => {
    // x [N, K]: K is open in the file, and the quantizer's guess for an open dimension (32) is
    // not the 64 the weights need.
    const model = matmulSoftmaxModel('N', 'K')

    it('fails on the guessed sizes, naming them and the option that gives others', async () => {
      await expect(quantizeForPublishing(model, 'open.onnx', undefined)).rejects.toThrow(
        /^open\.onnx: cannot make the int8 variant: onnxruntime cannot run the model on inputs x=1,32: .*; if it is the sample inputs' sizes, give those the model needs with --shape <input>=<d1,d2,…>$/s,
      )
    })

    it('is compared with fp32 on samples of those sizes', async () => {
      const variant = await quantizeForPublishing(model, 'open.onnx', 0.9, { shapes: ['x=1,64'] })
      expect(variant.report).toMatchObject({ samples: 200 })
      expect(variant.report.top1Agreement).toBeGreaterThan(0.9)
      expect(variant.text).toMatch(/^inputs: {6}x=1,64$/m)
    })

    it.each([
      ['naming no input', 'y=1,64', /^open\.onnx: --shape y: the model has no input "y" \(its inputs: x\)$/],
      ['of the wrong rank', 'x=1,64,1', /^open\.onnx: --shape x: 3 dimensions for a 2-D input$/],
      ['that is malformed', 'x=1,0', /^open\.onnx: --shape x=1,0: expected name=d1,d2,… of sizes of 1 or more/],
    ])('refuses a --shape %s as a usage error', async (_case, shape, message) => {
      const publishing = quantizeForPublishing(model, 'open.onnx', undefined, { shapes: [shape] })
      await expect(publishing).rejects.toThrow(message)
      await expect(publishing).rejects.toMatchObject({ exitCode: 2 })
    })
  })

  it('says plainly when the model cannot be quantized', async () => {
    await expect(quantizeForPublishing(new TextEncoder().encode('not a model'), 'notes.onnx', undefined)).rejects.toThrow(Int8VariantError)
    await expect(quantizeForPublishing(new TextEncoder().encode('not a model'), 'notes.onnx', undefined)).rejects.toThrow(/^notes\.onnx: /)
  })

  it('is refused before any upload when the quantizer finds nothing to quantize', async () => {
    // probs = Softmax(x · w), elementwise: no MatMul, Gemm or Conv, so the "variant" would be the
    // fp32 model itself (which the edge refuses only once it is uploaded).
    const elementwise = elementwiseSoftmaxModel()
    await expect(quantizeForPublishing(elementwise, 'multi.onnx', undefined)).rejects.toThrow(Int8VariantError)
    await expect(quantizeForPublishing(elementwise, 'multi.onnx', undefined)).rejects.toThrow(/^multi\.onnx: nothing to quantize \(no MatMul, Gemm or Conv the quantizer converts\), so .*: publish without --int8$/)
  })

  it('says why a model full of candidates had nothing quantized (fp16 weights)', async () => {
    // y = x · w with w stored as FLOAT16: the quantizer converts FLOAT weights only.
    const half = buildModel({
      inputs: [{ name: 'x', datatype: 'FP32', shape: ['N', 2] }],
      outputs: [{ name: 'y', datatype: 'FP32', shape: ['N', 2] }],
      initializers: [{ name: 'w', datatype: 'FP16', dims: [2, 2], data: new Uint8Array(8) }],
      nodes: [{ opType: 'MatMul', inputs: ['x', 'w'], outputs: ['y'] }],
    })
    await expect(quantizeForPublishing(half, 'half.onnx', undefined)).rejects.toThrow(
      /^half\.onnx: nothing to quantize \(1 MatMul\/Gemm\/Conv node\(s\) left in fp32; 1: weight is FLOAT16, not FLOAT\), so/,
    )
  })

  it('can come from elsewhere with the JSON report of depinfer-quantize', async () => {
    const file = write('q.onnx', new Uint8Array([1, 2, 3]))
    const report = write('q.json', JSON.stringify({ quantize: {}, comparison: { samples: 50, top1Agreement: 0.98, maxAbsError: 0.25, outputs: [] }, threshold: 0.99 }))
    const variant = await readInt8Variant(file, report, 0.97, MODEL)
    expect(variant).toMatchObject({ report: { top1Agreement: 0.98, maxAbsError: 0.25, samples: 50 }, minAgreement: 0.97 })
    expect(Array.from(variant.bytes)).toEqual([1, 2, 3])
    expect(variant.text).toMatch(/top-1 agreement 98\.00% over 50 samples, max abs error 0\.250, ≥ 97\.00%: devices run it/)
    expect((await readInt8Variant(file, report, undefined, MODEL)).text).toMatch(/< 99\.00%: devices run fp32/)
  })

  it("refuses a report of other files: the files it measured, by sha256 (or size in older reports), are not these", async () => {
    const int8 = new Uint8Array([1, 2, 3])
    const file = write('q3.onnx', int8)
    const report = (quantize: object) => write('q3.json', JSON.stringify({ quantize, comparison: { samples: 50, top1Agreement: 0.995, maxAbsError: 0.1 } }))
    const theirs = { fp32Bytes: 1_000, int8Bytes: 3, fp32Sha256: sha256(MODEL.bytes), int8Sha256: sha256(int8) }
    expect((await readInt8Variant(file, report(theirs), 0.99, MODEL)).report.top1Agreement).toBe(0.995)
    // Another checkpoint of the same network: the same sizes, other hashes.
    const otherInt8 = { ...theirs, int8Sha256: sha256(new Uint8Array([1, 2, 4])) }
    await expect(readInt8Variant(file, report(otherInt8), 0.99, MODEL)).rejects.toThrow(/is the report of another int8 file: it measured sha256 [0-9a-f]{64}, .*q3\.onnx has sha256 [0-9a-f]{64}/)
    const otherModel = { ...theirs, fp32Sha256: sha256(new Uint8Array(1_000)) }
    await expect(readInt8Variant(file, report(otherModel), 0.99, MODEL)).rejects.toThrow(/is the report of another model: it measured sha256 [0-9a-f]{64}, model\.onnx has sha256/)
    // A report of an older depinfer-quantize (sizes only): the sizes are checked.
    await expect(readInt8Variant(file, report({ fp32Bytes: 1_000, int8Bytes: 4 }), 0.99, MODEL)).rejects.toThrow(/another int8 file: it measured a 4-byte file, .*q3\.onnx has 3 bytes/)
    await expect(readInt8Variant(file, report({ fp32Bytes: 999, int8Bytes: 3 }), 0.99, MODEL)).rejects.toThrow(/another model: it measured a 999-byte file, model\.onnx has 1000 bytes/)
  })

  it.each([
    ['not JSON', '{', /cannot read the int8 report/],
    ['not a quantizer report', '{"comparison": {"samples": 0}}', /is not a depinfer-quantize --json report: comparison\.samples/],
    ['a report without agreement', '{"comparison": {"samples": 5, "maxAbsError": 0.1}}', /top-1 agreement with fp32 cannot be measured/],
  ])('refuses a report that is %s', async (_case, content, message) => {
    await expect(readInt8Variant(write('q2.onnx', 'x'), write('bad.json', content), 0.99, MODEL)).rejects.toThrow(message)
  })

  it('describes what devices will do with a report', () => {
    expect(describeReport({ top1Agreement: 0.99, maxAbsError: 0.1, samples: 200 }, 0.99)).toMatch(/≥ 99\.00%: devices run it$/)
    expect(describeReport({ top1Agreement: 0.985, maxAbsError: 0.1, samples: 200 }, 0.99)).toMatch(/< 99\.00%: devices run fp32$/)
  })
})
