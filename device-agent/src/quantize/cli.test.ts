import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { bundledModelPath } from '../models/bundled.js'
import { main } from './cli.js'
import { matmulGemmModel } from './fixtures.js'
import { decodeModel } from './onnx-proto.js'

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
})
