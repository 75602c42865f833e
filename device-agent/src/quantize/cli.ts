/**
 * `depinfer-quantize <in.onnx> <out.onnx> [options]`: writes an int8 version of an fp32 ONNX
 * model and prints how it compares (size, latency here, agreement on seeded sample inputs).
 *
 * Exit codes: 0 written and the agreement threshold met; 3 written but the threshold not met (or
 * not judgeable: no class axis); 2 usage; 1 the input could not be read or quantized. Meeting the
 * threshold is about agreement only: the report's verdict line also weighs the measured speed.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { basename } from 'node:path'
import { parseArgs } from 'node:util'
import { inputSpecs, sampleFeeds, withBatch } from './evaluate.js'
import { OnnxFormatError } from './onnx-proto.js'
import { QUANTIZABLE_OPS, QuantizeError, preprocessModel, quantizeModel, type QuantizableOp, type QuantizeOptions } from './quantize.js'
import { EVALUATION_DEFAULTS, evaluateQuantization, formatReport } from './report.js'
import type { SampleKind } from './samples.js'

export const USAGE = `usage: depinfer-quantize <in.onnx> <out.onnx> [options]

  --samples N              seeded sample inputs to compare fp32 and int8 on (default 200)
  --per-channel            one weight scale per output channel (default: per tensor)
  --threshold X            top-1 agreement the int8 model must reach (default 0.99)
  --shape name=d1,d2,...   concrete input shape (dynamic dimensions; batch 1), repeatable
  --calibrate              static quantization: activation ranges from sample inputs
  --calibration-samples N  samples used to calibrate (default 32; different seed than --samples)
  --ops MatMul,Gemm,Conv   op types to quantize (default all three)
  --weight-type int8|uint8 weight type for MatMul/Gemm (default int8, symmetric)
  --reduce-range           7-bit weights (x86 CPUs without VNNI)
  --exclude-depthwise      leave depthwise convolutions in fp32 (slow in int8 on x86)
  --exclude-first          leave the layers reading a graph input (the stem) in fp32
  --exclude a,b,...        leave these nodes (by name) in fp32
  --inputs KIND            sample inputs: text-line (half upside down), text-line-upright,
                           text-page or normal (default: by the model's input/output shapes)
  --seed N                 seed of the sample inputs (default 1)
  --threads N              onnxruntime intra-op threads for the measurements (default: its own)
  --rounds N               latency runs per model at batch 1 (default 100)
  --no-bench               skip the latency measurement
  --write-rewritten PATH   also write the fp32 model with the graph rewrites alone (no int8)
  --json                   print the report as JSON

Exit code 0: written, threshold met; 3: written, threshold not met; 2: usage; 1: error.`

class UsageError extends Error {}

function positiveInt(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback
  const n = Number(value)
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`--${name} must be a positive integer, not ${JSON.stringify(value)}`)
  return n
}

function parseShapes(values: readonly string[]): Map<string, number[]> {
  const shapes = new Map<string, number[]>()
  for (const value of values) {
    const match = /^([^=]+)=(\d+(?:,\d+)*)$/.exec(value)
    if (!match) throw new UsageError(`--shape ${value}: expected name=d1,d2,… (e.g. x=1,3,48,192)`)
    shapes.set(match[1]!, match[2]!.split(',').map(Number))
  }
  return shapes
}

export async function main(argv: string[]): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        samples: { type: 'string' },
        'per-channel': { type: 'boolean' },
        threshold: { type: 'string' },
        shape: { type: 'string', multiple: true },
        calibrate: { type: 'boolean' },
        'calibration-samples': { type: 'string' },
        ops: { type: 'string' },
        'weight-type': { type: 'string' },
        'reduce-range': { type: 'boolean' },
        'exclude-depthwise': { type: 'boolean' },
        'exclude-first': { type: 'boolean' },
        exclude: { type: 'string' },
        inputs: { type: 'string' },
        seed: { type: 'string' },
        threads: { type: 'string' },
        rounds: { type: 'string' },
        'no-bench': { type: 'boolean' },
        'write-rewritten': { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    })
  } catch (error) {
    console.error(`${error instanceof Error ? error.message : String(error)}\n\n${USAGE}`)
    return 2
  }
  const { positionals, values } = parsed
  if (values.help) {
    console.log(USAGE)
    return 0
  }
  const [input, output] = positionals
  if (input === undefined || output === undefined || positionals.length > 2) {
    console.error(USAGE)
    return 2
  }
  try {
    const samples = positiveInt('samples', values.samples, EVALUATION_DEFAULTS.samples)
    const seed = values.seed === undefined ? EVALUATION_DEFAULTS.seed : Number(values.seed)
    if (!Number.isInteger(seed)) throw new UsageError('--seed must be an integer')
    const threshold = values.threshold === undefined ? EVALUATION_DEFAULTS.threshold : Number(values.threshold)
    if (!(threshold >= 0 && threshold <= 1)) throw new UsageError('--threshold must be between 0 and 1')
    const ops = values.ops === undefined ? [...QUANTIZABLE_OPS] : values.ops.split(',').map((s) => s.trim())
    const unknownOp = ops.find((op) => !(QUANTIZABLE_OPS as readonly string[]).includes(op))
    if (unknownOp !== undefined) throw new UsageError(`--ops: ${unknownOp} is not one of ${QUANTIZABLE_OPS.join(', ')}`)
    const weightType = values['weight-type'] ?? 'int8'
    if (weightType !== 'int8' && weightType !== 'uint8') throw new UsageError('--weight-type must be int8 or uint8')
    const kind = values.inputs
    if (kind !== undefined && kind !== 'text-line' && kind !== 'text-line-upright' && kind !== 'text-page' && kind !== 'normal') {
      throw new UsageError('--inputs must be text-line, text-line-upright, text-page or normal')
    }
    const threads = values.threads === undefined ? undefined : positiveInt('threads', values.threads, 1)
    const rounds = positiveInt('rounds', values.rounds, 100)
    const shapes = parseShapes(values.shape ?? [])

    let fp32: Uint8Array
    try {
      fp32 = readFileSync(input)
    } catch (error) {
      console.error(`cannot read ${input}: ${error instanceof Error ? error.message : String(error)}`)
      return 1
    }
    // Decodes (and rejects a non-model) before onnxruntime sees the file, for a clear message.
    const fp32Rewritten = preprocessModel(fp32)
    const specs = await inputSpecs(fp32, shapes)
    const options: QuantizeOptions = {
      perChannel: values['per-channel'] ?? false,
      weightType,
      reduceRange: values['reduce-range'] ?? false,
      ops: ops as QuantizableOp[],
      excludeDepthwise: values['exclude-depthwise'] ?? false,
      excludeFirst: values['exclude-first'] ?? false,
      exclude: values.exclude === undefined ? [] : values.exclude.split(',').map((s) => s.trim()).filter(Boolean),
    }
    if (values.calibrate) {
      const count = positiveInt('calibration-samples', values['calibration-samples'], 32)
      // A different seed from the comparison samples: agreement is measured on unseen inputs.
      options.calibration = sampleFeeds(withBatch(specs, 1) ?? specs, count, seed + 1_000_003, kind as SampleKind | undefined)
    }
    const { bytes, report: quantizeReport } = await quantizeModel(fp32, options)
    writeFileSync(output, bytes)
    if (values['write-rewritten'] !== undefined) writeFileSync(values['write-rewritten'], fp32Rewritten)
    const report = await evaluateQuantization(fp32, bytes, quantizeReport, {
      specs,
      samples,
      seed,
      threshold,
      ...(kind !== undefined && { kind: kind as SampleKind }),
      batches: values['no-bench'] ? [] : [1, 8],
      rounds,
      sessionOptions: { graphOptimizationLevel: 'all', executionMode: 'sequential', ...(threads !== undefined && { intraOpNumThreads: threads }) },
      fp32Rewritten,
    })
    console.log(values.json ? JSON.stringify(report, null, 2) : formatReport(report, { input: basename(input), output: basename(output) }))
    return report.thresholdMet ? 0 : 3
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`${error.message}\n\n${USAGE}`)
      return 2
    }
    if (error instanceof OnnxFormatError || error instanceof QuantizeError) {
      console.error(`${input}: ${error.message}`)
      return 1
    }
    throw error
  }
}
