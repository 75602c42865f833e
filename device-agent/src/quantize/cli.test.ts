import { existsSync, linkSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { buildModel, classifierWithEmbeddingModel, elementwiseSoftmaxModel, matmulSoftmaxModel } from '../../../test/helpers/onnx-model.js'
import { bundledModelPath } from '../models/bundled.js'
import { main } from './cli.js'
import { matmulGemmModel } from './fixtures.js'
import { decodeModel } from './onnx-proto.js'

/** out = f16 + f16, an FP16 input no sample can be generated for (Add-14 takes float16). */
function float16Model(): Uint8Array {
  return buildModel({
    inputs: [{ name: 'f16', datatype: 'FP16', shape: ['N', 4] }],
    outputs: [{ name: 'out', datatype: 'FP16', shape: ['N', 4] }],
    nodes: [{ opType: 'Add', inputs: ['f16', 'f16'], outputs: ['out'] }],
    opset: 14,
  })
}

describe('depinfer-quantize', () => {
  const dir = mkdtempSync(join(tmpdir(), 'depinfer-quantize-'))
  let out: string[]
  let err: string[]
  beforeEach(() => {
    out = []
    err = []
    vi.spyOn(console, 'log').mockImplementation((...args: unknown[]) => void out.push(args.join(' ')))
    vi.spyOn(console, 'error').mockImplementation((...args: unknown[]) => void err.push(args.join(' ')))
  })
  afterEach(() => vi.restoreAllMocks())
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it('writes the int8 model and a report with sizes and agreement', async () => {
    const input = join(dir, 'mm.onnx')
    const output = join(dir, 'mm-int8.onnx')
    writeFileSync(input, matmulGemmModel().bytes)
    const code = await main([input, output, '--samples', '20', '--no-bench', '--shape', 'x=1,16', '--per-channel'])
    const text = out.join('\n')
    expect(text).toMatch(/quantized: {3}MatMul 2, Gemm 1/)
    expect(text).toMatch(/size: {8}fp32 .* → int8 /)
    // y = Gemm(…) is [rows, 4] (onnxruntime infers it): 4 classes. z = MatMul(x, …) has no
    // known shape, so no class axis to compare arg-maxes on.
    expect(text).toMatch(/y: top-1 \d+\.\d+% of 20 positions/)
    expect(text).toMatch(/z: top-1 n\/a/)
    expect(code).toBe(0)
    expect(decodeModel(readFileSync(output)).graph!.node.map((n) => n.opType)).toContain('DynamicQuantizeMatMul')
  })

  it('judges the threshold on a classifier: exit code 0 when met', async () => {
    const output = join(dir, 'cls-int8.onnx')
    const args = [bundledModelPath('ppocr-cls'), output, '--samples', '50', '--no-bench', '--per-channel', '--exclude-depthwise', '--exclude-first']
    expect(await main(args)).toBe(0)
    expect(out.join('\n')).toMatch(/softmax_0\.tmp_0: top-1 \d+\.\d+% of 50 positions/)
    expect(out.join('\n')).toMatch(/threshold: {3}top-1 ≥ 99\.00%: MET/)
  })

  it('prints the report as JSON with --json', async () => {
    const input = join(dir, 'mm.onnx')
    writeFileSync(input, matmulGemmModel().bytes)
    await main([input, join(dir, 'mm-int8.onnx'), '--samples', '5', '--no-bench', '--shape', 'x=2,16', '--json'])
    const report = JSON.parse(out.join('\n')) as { quantize: { mode: string }; comparison: { samples: number }; inputs: unknown }
    expect(report.quantize.mode).toBe('dynamic')
    expect(report.comparison.samples).toBe(5)
    expect(report.inputs).toEqual([{ name: 'x', shape: [2, 16] }])
  })

  it('fails with a clear message, not a crash, on a file that is not ONNX', async () => {
    const input = join(dir, 'notes.onnx')
    writeFileSync(input, 'these are not the weights you are looking for')
    expect(await main([input, join(dir, 'x.onnx')])).toBe(1)
    expect(err.join('\n')).toMatch(/notes\.onnx: not an ONNX model/)
  })

  it('fails with a clear message on a missing file', async () => {
    expect(await main([join(dir, 'missing.onnx'), join(dir, 'x.onnx')])).toBe(1)
    expect(err.join('\n')).toMatch(/cannot read .*missing\.onnx/)
  })

  it('rejects bad usage with exit code 2', async () => {
    expect(await main([])).toBe(2)
    expect(await main(['a.onnx', 'b.onnx', '--threshold', '2'])).toBe(2)
    expect(await main(['a.onnx', 'b.onnx', '--shape', 'x'])).toBe(2)
    expect(await main(['a.onnx', 'b.onnx', '--ops', 'Conv,Softmax'])).toBe(2)
    expect(await main(['a.onnx', 'b.onnx', '--bogus'])).toBe(2)
  })

  it('refuses to write the output over the input, however the path is spelled', async () => {
    const input = join(dir, 'same.onnx')
    const model = matmulSoftmaxModel('N')
    writeFileSync(input, model)
    linkSync(input, join(dir, 'same-link.onnx'))
    for (const output of [input, join(dir, 'sub', '..', 'same.onnx'), join(dir, 'same-link.onnx')]) {
      err = []
      expect(await main([input, output, '--no-bench', '--samples', '5'])).toBe(2)
      expect(err).toEqual([expect.stringMatching(new RegExp(`^the output ${output.replaceAll('.', '\\.')} is the input ${input.replaceAll('.', '\\.')}: `))])
    }
    expect(Buffer.compare(readFileSync(input), model)).toBe(0)
    expect(out).toEqual([])
  })

  it('measures latency at the batch size a model fixes, with or without --shape', async () => {
    const input = join(dir, 'batch2.onnx')
    writeFileSync(input, matmulSoftmaxModel(2))
    for (const shape of [[], ['--shape', 'x=2,64']]) {
      out = []
      const code = await main([input, join(dir, 'batch2-int8.onnx'), '--samples', '5', '--rounds', '5', ...shape])
      expect([0, 3]).toContain(code)
      const text = out.join('\n')
      expect(text).toMatch(/inputs: {6}x=2,64/)
      expect(text).toMatch(/^ {2}batch 2 /m)
      expect(text).not.toMatch(/^ {2}batch [18] /m)
      expect(text).toMatch(/speed: .* than fp32 at batch 2$/m)
    }
    // --calibrate samples at the model's batch size too.
    expect([0, 3]).toContain(await main([input, join(dir, 'batch2-int8.onnx'), '--samples', '5', '--no-bench', '--calibrate']))
    expect(await main([input, join(dir, 'batch2-int8.onnx'), '--no-bench', '--shape', 'x=1,64'])).toBe(2)
    expect(err.at(-1)).toBe('--shape x=1,64: dimension 0 of x is fixed at 2 (declared [2,64])')
  })

  it.each([
    ['a --shape against a fixed dimension', () => matmulSoftmaxModel('N'), ['--shape', 'x=1,63'], 2, /^--shape x=1,63: dimension 1 of x is fixed at 64 \(declared \[N,64\]\)$/],
    ['a --shape onnxruntime rejects', () => matmulSoftmaxModel('N', 'K'), ['--shape', 'x=1,63'], 1, /^.*model\.onnx: onnxruntime cannot run the model on inputs x=1,63: .*MatMul.*$/],
    ['a --shape naming no input', () => matmulSoftmaxModel('N'), ['--shape', 'y=1,64'], 2, /^--shape y: the model has no input "y" \(its inputs: x\)$/],
    ['a float16 input', float16Model, [], 1, /^.*model\.onnx: input f16 is float16; only float32 inputs can be generated$/],
  ])('fails in one line, writing nothing, on %s', async (_case, model, options, code, message) => {
    const input = join(dir, 'model.onnx')
    const output = join(dir, 'failed-int8.onnx')
    writeFileSync(input, model())
    rmSync(output, { force: true })
    expect(await main([input, output, '--no-bench', '--samples', '5', ...options])).toBe(code)
    expect(err).toEqual([expect.stringMatching(message)])
    expect(existsSync(output)).toBe(false)
  })

  it('fails in one line on an output in a directory that does not exist', async () => {
    const input = join(dir, 'nodir.onnx')
    writeFileSync(input, matmulSoftmaxModel('N'))
    expect(await main([input, join(dir, 'missing', 'out.onnx'), '--no-bench', '--samples', '5'])).toBe(1)
    expect(err).toEqual([`cannot write ${join(dir, 'missing', 'out.onnx')}: no directory ${join(dir, 'missing')}`])
  })

  it('does not recommend int8 when nothing was quantized, and exits as for fp32', async () => {
    const input = join(dir, 'mul.onnx')
    writeFileSync(input, elementwiseSoftmaxModel())
    expect(await main([input, join(dir, 'mul-int8.onnx'), '--no-bench', '--samples', '5'])).toBe(3)
    const text = out.join('\n')
    expect(text).toMatch(/quantized: {3}nothing/)
    expect(text).toMatch(/verdict: {5}run fp32 \(nothing was quantized/)
  })

  it('says that --calibrate leaves MatMul dynamic', async () => {
    const input = join(dir, 'calibrated.onnx')
    writeFileSync(input, matmulSoftmaxModel('N'))
    await main([input, join(dir, 'calibrated-int8.onnx'), '--no-bench', '--samples', '5', '--calibrate'])
    const text = out.join('\n')
    expect(text).toMatch(/^mode: {8}dynamic \(.*\): --calibrate quantized nothing statically/m)
    expect(text).toMatch(/^quantized: {3}MatMul 1$/m)
    await main([input, join(dir, 'calibrated-int8.onnx'), '--no-bench', '--samples', '5', '--calibrate', '--json'])
    const report = JSON.parse(out.slice(1).join('\n')) as { quantizedAs: unknown }
    expect(report.quantizedAs).toEqual({ static: {}, dynamic: { MatMul: 1 } })
  })

  it('--accuracy-aware leaves the layers the search chose in fp32 in the written model, and says so', async () => {
    const output = join(dir, 'cls-aware.onnx')
    // Static (calibrated) convolutions: the search's candidates are the Convs, not the Add/Mul next to them.
    const args = [bundledModelPath('ppocr-cls'), output, '--calibrate', '--accuracy-aware', '--threshold', '1', '--samples', '60', '--search-samples', '40', '--no-bench']
    const code = await main([...args, '--json'])
    const report = JSON.parse(out.join('\n')) as {
      search: { fp32Layers: string[]; candidates: number; seed: number; samples: number; met: boolean }
      comparison: { samples: number }
      quantize: { nodes: { name: string; opType: string; skipped?: string }[] }
      thresholdMet: boolean
    }
    const { fp32Layers, candidates, seed, samples } = report.search
    expect(report.search.met).toBe(true)
    expect(fp32Layers.length).toBeGreaterThan(0)
    expect(fp32Layers.length).toBeLessThan(candidates)
    // Searched on its own inputs: another seed than the report's (1), and the count asked for.
    expect(seed).not.toBe(1)
    expect(samples).toBe(40)
    expect(report.comparison.samples).toBe(60)
    // Exactly the chosen layers still read fp32 weights in the file; every other Conv reads its
    // weights through a DequantizeLinear (QDQ format: onnxruntime runs those in int8).
    const nodes = decodeModel(readFileSync(output)).graph!.node
    const dequantized = new Set(nodes.filter((n) => n.opType === 'DequantizeLinear').map((n) => n.output[0]))
    const fp32Convs = nodes.filter((n) => n.opType === 'Conv' && !dequantized.has(n.input[1])).map((n) => n.name)
    expect(fp32Convs.sort()).toEqual([...fp32Layers].sort())
    expect(report.quantize.nodes.filter((n) => n.skipped === 'excluded').map((n) => n.name).sort()).toEqual([...fp32Layers].sort())
    expect(code).toBe(report.thresholdMet ? 0 : 3)
    expect(err.some((line) => /^search: sensitivity \d+\/\d+$/.test(line))).toBe(true)

    out = []
    await main(args)
    expect(out.join('\n')).toMatch(
      new RegExp(`^search: {6}quantized as asked, top-1 is [\\d.]+% on 40 search samples \\(seed ${seed}, 40 positions\\) \\(< 100\\.00%\\);\n {13}${fp32Layers.length} of ${candidates} layers left fp32 give 100\\.00% there`, 'm'),
    )
  }, 120_000)

  describe('--class-output, on a model whose embedding is as class-like as its probabilities', () => {
    // probs agrees with fp32 on every row, embedding's arg-max on about 1 row in 16 (the helper says why).
    const input = join(dir, 'embedding.onnx')
    const output = join(dir, 'embedding-int8.onnx')
    beforeEach(() => {
      writeFileSync(input, classifierWithEmbeddingModel())
      rmSync(output, { force: true })
    })
    const base = [input, output, '--samples', '50', '--no-bench']

    it('judges every class-like output without it: the embedding\'s arg-max refuses the model', async () => {
      expect(await main(base)).toBe(3)
      const text = out.join('\n')
      expect(text).toMatch(/^judged on: {3}probs, embedding: the lowest of their agreements \(--class-output names the class output/m)
      expect(text).toMatch(/^threshold: {3}top-1 ≥ 99\.00%: NOT met/m)
    })

    it('judges the named output alone, and says so', async () => {
      expect(await main([...base, '--class-output', 'probs'])).toBe(0)
      const text = out.join('\n')
      expect(text).toMatch(/^ {2}probs: top-1 100\.00% of 50 positions, /m)
      expect(text).toMatch(/^ {2}embedding: top-1 \d+\.\d+% of 50 positions \(not judged\), max abs error (?!0\.00,)/m)
      expect(text).toMatch(/^judged on: {3}probs \(--class-output\); the other outputs count for max abs error only$/m)
      expect(text).toMatch(/^threshold: {3}top-1 ≥ 99\.00%: MET$/m)
      out = []
      await main([...base, '--class-output', 'probs', '--json'])
      const report = JSON.parse(out.join('\n')) as { comparison: { top1Agreement: number; judgedOutputs: string[]; outputsNamed: boolean } }
      expect(report.comparison).toMatchObject({ top1Agreement: 1, judgedOutputs: ['probs'], outputsNamed: true })
    })

    it('with --accuracy-aware, searches by the named output: nothing needs fp32', async () => {
      expect(await main([...base, '--accuracy-aware', '--search-samples', '20', '--class-output', 'probs'])).toBe(0)
      expect(out.join('\n')).toMatch(/^search: {6}quantized as asked, top-1 is 100\.00% on 20 search samples .*: no layer needs fp32$/m)
      // Without it the embedding's agreement sends the one MatMul back to fp32.
      out = []
      expect(await main([...base, '--accuracy-aware', '--search-samples', '20'])).toBe(3)
      expect(out.join('\n')).toMatch(/^ {13}1 of 1 layers left fp32 give 100\.00% there/m)
    })

    it('refuses a name that is no output, in one line listing the outputs, before quantizing', async () => {
      expect(await main([...base, '--class-output', 'probs', '--class-output', 'logits'])).toBe(2)
      expect(err).toEqual(['--class-output logits: the model has no output "logits" (its outputs: probs, embedding)'])
      expect(out).toEqual([])
      expect(existsSync(output)).toBe(false)
      err = []
      expect(await main([...base, '--accuracy-aware', '--class-output', 'logits'])).toBe(2)
      expect(err).toEqual(['--class-output logits: the model has no output "logits" (its outputs: probs, embedding)'])
    })
  })

  it('takes --search-samples only with --accuracy-aware', async () => {
    expect(await main([bundledModelPath('ppocr-cls'), join(dir, 'x.onnx'), '--search-samples', '10'])).toBe(2)
    expect(err[0]).toMatch(/^--search-samples goes with --accuracy-aware/)
  })
})
