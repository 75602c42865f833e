/**
 * `depinfer-quantize <in.onnx> <out.onnx> [options]`: writes an int8 version of an fp32 ONNX
 * model and prints how it compares (size, latency here, agreement on seeded sample inputs).
 *
 * Exit codes: 0 written and the agreement threshold met; 3 written but the threshold not met (or
 * not judgeable: no class axis), or nothing was quantized; 2 usage; 1 the input could not be
 * read, quantized or run. Meeting the threshold is about agreement only: the report's verdict
 * line also weighs the measured speed. The output is written only once the model has been
 * quantized and measured: a command that fails leaves no file behind.
 */
import { readFileSync, statSync, writeFileSync } from 'node:fs'
import { basename, dirname, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { messageOf } from '@depinfer/shared'
import { ClassOutputError, DEFAULT_SESSION_OPTIONS, EvaluationError, ShapeOverrideError, checkClassOutputs, inputSpecs, latencyBatches, parseShapeOptions, sampleFeeds, withBatch } from './evaluate.js'
import { OnnxFormatError } from './onnx-proto.js'
import { QUANTIZABLE_OPS, QuantizeError, preprocessModel, quantizeModel, type QuantizableOp, type QuantizeOptions } from './quantize.js'
import { EVALUATION_DEFAULTS, evaluateQuantization, formatReport, nothingQuantized, type SearchSummary } from './report.js'
import { searchFp32Layers } from './search.js'
import type { SampleKind } from './samples.js'

export const USAGE = `usage: depinfer-quantize <in.onnx> <out.onnx> [options]

  --samples N              seeded sample inputs to compare fp32 and int8 on (default 200)
  --per-channel            one weight scale per output channel (default: per tensor)
  --threshold X            top-1 agreement the int8 model must reach (default 0.99)
  --class-output NAME      the output whose top-1 agreement is judged, repeatable (default:
                           every output with a class axis or integer labels, the lowest
                           agreement counts); the others count for max abs error only
  --shape name=d1,d2,...   concrete input shape (dynamic dimensions; batch 1), repeatable
  --calibrate              static quantization: activation ranges from sample inputs
  --calibration-samples N  samples used to calibrate (default 32; different seed than --samples)
  --ops MatMul,Gemm,Conv   op types to quantize (default all three)
  --weight-type int8|uint8 weight type for MatMul/Gemm (default int8, symmetric)
  --reduce-range           7-bit weights (x86 CPUs without VNNI)
  --exclude-depthwise      leave depthwise convolutions in fp32 (slow in int8 on x86)
  --exclude-first          leave the layers reading a graph input (the stem) in fp32
  --exclude a,b,...        leave these nodes (by name) in fp32
  --accuracy-aware         when the threshold is missed, leave the layers costing the most
                           agreement in fp32, as few as the threshold allows (measured on
                           separate search samples; takes one run per layer)
  --search-samples N       sample inputs the search measures on (another seed; default: enough
                           for 1,000 class positions, 20 to 500)
  --inputs KIND            sample inputs: text-line (half upside down), text-line-upright,
                           text-page or normal (default: by the model's input/output shapes)
  --seed N                 seed of the sample inputs (default 1)
  --threads N              onnxruntime intra-op threads for the measurements (default: its own)
  --rounds N               latency runs per model at the smallest batch (default 100)
  --no-bench               skip the latency measurement
  --write-rewritten PATH   also write the fp32 model with the graph rewrites alone (no int8)
  --json                   print the report as JSON

Latency is measured at batch 1 and 8, or at the model's batch size when it is fixed.
Exit code 0: written, threshold met; 3: written, threshold not met or nothing quantized;
2: usage; 1: error (nothing written).`

class UsageError extends Error {
  constructor(
    message: string,
    /** Whether the usage text helps: not when the options are well-formed but do not fit the files. */
    readonly showUsage = true,
  ) {
    super(message)
  }
}

/** An output file cannot be written (its directory does not exist, a write failed). */
class OutputError extends Error {}

/** Whether two paths name the same file: the same path once resolved, or (both existing) the same inode, as through a link. */
function sameFile(a: string, b: string): boolean {
  if (resolve(a) === resolve(b)) return true
  try {
    const [x, y] = [statSync(a), statSync(b)]
    return x.dev === y.dev && x.ino === y.ino
  } catch {
    return false
  }
}

/** Refuses an output that would overwrite the input or another output, before anything is read. */
function checkOutputPaths(input: string, outputs: readonly string[]): void {
  for (const [i, output] of outputs.entries()) {
    if (sameFile(input, output)) {
      throw new UsageError(`the output ${output} is the input ${input}: the fp32 model would be overwritten; name another output file`, false)
    }
    const other = outputs.slice(0, i).find((earlier) => sameFile(earlier, output))
    if (other !== undefined) throw new UsageError(`--write-rewritten ${output} is the output ${other}: name another file`, false)
    // Checked now rather than when writing, which comes only after quantizing and measuring.
    const dir = dirname(resolve(output))
    let isDirectory = false
    try {
      isDirectory = statSync(dir).isDirectory()
    } catch {
      // Missing or unreadable: either way the file cannot be written there.
    }
    if (!isDirectory) throw new OutputError(`cannot write ${output}: no directory ${dir}`)
  }
}

function writeOutput(path: string, bytes: Uint8Array, written: readonly string[]): void {
  try {
    writeFileSync(path, bytes)
  } catch (error) {
    const already = written.length > 0 ? ` (${written.join(' and ')} written)` : ''
    throw new OutputError(`cannot write ${path}: ${messageOf(error)}${already}`, { cause: error })
  }
}

function positiveInt(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback
  const n = Number(value)
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`--${name} must be a positive integer, not ${JSON.stringify(value)}`)
  return n
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
        // Repeatable rather than comma-separated: an output name may hold a comma.
        'class-output': { type: 'string', multiple: true },
        shape: { type: 'string', multiple: true },
        calibrate: { type: 'boolean' },
        'calibration-samples': { type: 'string' },
        ops: { type: 'string' },
        'weight-type': { type: 'string' },
        'reduce-range': { type: 'boolean' },
        'exclude-depthwise': { type: 'boolean' },
        'exclude-first': { type: 'boolean' },
        exclude: { type: 'string' },
        'accuracy-aware': { type: 'boolean' },
        'search-samples': { type: 'string' },
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
    console.error(`${messageOf(error)}\n\n${USAGE}`)
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
    const searchSamples = values['search-samples'] === undefined ? undefined : positiveInt('search-samples', values['search-samples'], 1)
    if (values['search-samples'] !== undefined && !values['accuracy-aware']) throw new UsageError('--search-samples goes with --accuracy-aware')
    const shapes = parseShapeOptions(values.shape ?? [])
    const rewrittenOutput = values['write-rewritten']
    checkOutputPaths(input, rewrittenOutput === undefined ? [output] : [output, rewrittenOutput])

    let fp32: Uint8Array
    try {
      fp32 = readFileSync(input)
    } catch (error) {
      console.error(`cannot read ${input}: ${messageOf(error)}`)
      return 1
    }
    // Decodes (and rejects a non-model) before onnxruntime sees the file, for a clear message.
    const fp32Rewritten = preprocessModel(fp32)
    const specs = await inputSpecs(fp32, shapes)
    const classOutputs = values['class-output'] ?? []
    // Before quantizing or a search of many minutes: a misspelt name is said at once.
    await checkClassOutputs(fp32, classOutputs)
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
    const sessionOptions = {
      ...DEFAULT_SESSION_OPTIONS,
      // onnxruntime's own log would repeat, on a line of its own, the failure this command
      // reports itself (EvaluationError carries onnxruntime's message).
      logSeverityLevel: 4,
      ...(threads !== undefined && { intraOpNumThreads: threads }),
    } as const
    let quantized: Awaited<ReturnType<typeof quantizeModel>>
    let search: SearchSummary | undefined
    try {
      if (values['accuracy-aware']) {
        // The search calibrates once; the model written below reuses its ranges too.
        if (options.calibration) options.calibrationCache = new Map()
        // Yet another seed: the layers are chosen on inputs that neither calibrate nor judge.
        const searchSeed = seed + 2_000_003
        const found = await searchFp32Layers(fp32, options, {
          threshold,
          sampleFeeds: (count) => sampleFeeds(withBatch(specs, 1) ?? specs, count, searchSeed, kind as SampleKind | undefined),
          ...(searchSamples !== undefined && { samples: searchSamples }),
          classOutputs,
          sessionOptions,
          onProgress: (line) => console.error(line),
        })
        const { ranking, ...summary } = found
        search = { ...summary, seed: searchSeed }
        options.exclude = [...(options.exclude ?? []), ...found.fp32Layers]
      }
      quantized = await quantizeModel(fp32, options)
    } catch (error) {
      // Calibration runs the model in onnxruntime: a sample shape it rejects is about the model
      // and the options, said in one line like the measurements' failures (the search's own
      // comparisons fail as EvaluationErrors already).
      if (!options.calibration || error instanceof QuantizeError || error instanceof OnnxFormatError || error instanceof EvaluationError) throw error
      throw new EvaluationError(`calibration could not run the model: ${error instanceof Error ? error.message.split('\n')[0] : String(error)}`, { cause: error })
    }
    const { bytes, report: quantizeReport } = quantized
    const report = await evaluateQuantization(fp32, bytes, quantizeReport, {
      specs,
      samples,
      seed,
      threshold,
      classOutputs,
      ...(kind !== undefined && { kind: kind as SampleKind }),
      batches: values['no-bench'] ? [] : latencyBatches(specs),
      rounds,
      sessionOptions,
      fp32Rewritten,
    })
    if (search) report.search = search
    // Written only now: a model that fails to quantize or run leaves no output to mistake for a result.
    writeOutput(output, bytes, [])
    if (rewrittenOutput !== undefined) writeOutput(rewrittenOutput, fp32Rewritten, [output])
    console.log(values.json ? JSON.stringify(report, null, 2) : formatReport(report, { input: basename(input), output: basename(output) }))
    // Nothing quantized: the "int8" file is the fp32 model, not a variant worth running.
    return report.thresholdMet && !nothingQuantized(report.quantize) ? 0 : 3
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(error.showUsage ? `${error.message}\n\n${USAGE}` : error.message)
      return 2
    }
    if (error instanceof ShapeOverrideError || error instanceof ClassOutputError) {
      console.error(error.message)
      return 2
    }
    if (error instanceof OutputError) {
      console.error(error.message)
      return 1
    }
    if (error instanceof OnnxFormatError || error instanceof QuantizeError || error instanceof EvaluationError) {
      console.error(`${input}: ${error.message}`)
      return 1
    }
    throw error
  }
}
