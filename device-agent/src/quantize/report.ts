/**
 * The quantization report: what was quantized, size, latency on this machine and agreement with
 * fp32 on sample inputs, and whether the publisher's agreement threshold is met.
 */
import { cpus, loadavg, totalmem } from 'node:os'
import type { VariantReport } from '@depinfer/shared'
import type * as ort from 'onnxruntime-node'
import { ORT_VERSION } from '../version.js'
import {
  DEFAULT_SESSION_OPTIONS,
  compareModels,
  latencyBatches,
  measureLatency,
  sampleFeeds,
  withBatch,
  type Comparison,
  type InputSpec,
  type LatencyResult,
} from './evaluate.js'
import { spinningAllowed } from '../runtime/execution.js'
import { decodeModel } from './onnx-proto.js'
import type { QuantizeReport } from './quantize.js'
import type { SampleKind } from './samples.js'
import type { SearchResult } from './search.js'

/**
 * How int8 is compared with fp32 unless told otherwise: `depinfer-quantize` and
 * `depinfer models publish --int8` measure alike, so their figures can be compared.
 */
export const EVALUATION_DEFAULTS = { samples: 200, seed: 1, threshold: 0.99 } as const

export interface LatencyRow {
  batch: number
  fp32: LatencyResult
  /** fp32 with the same graph rewrites as the int8 model, not quantized. */
  fp32Rewritten?: LatencyResult
  int8: LatencyResult
  /** fp32 p50 / int8 p50. */
  speedup: number
}

/** Quantized nodes by op type, split by how they run. */
export interface QuantizedAs {
  /** Int8 between QuantizeLinear/DequantizeLinear pairs with calibrated activation ranges. */
  static: Record<string, number>
  /** Activations quantized at run time (DynamicQuantizeMatMul, ConvInteger). */
  dynamic: Record<string, number>
}

export interface EvaluationReport {
  quantize: QuantizeReport
  /**
   * How the quantized nodes run: static mode leaves MatMul and Gemm dynamic unless told
   * otherwise (quantize.ts), so `quantize.mode` alone would claim more than was done.
   */
  quantizedAs: QuantizedAs
  inputs: { name: string; shape: number[] }[]
  /** The sample kind(s) used, or 'auto' (by shape). */
  sampleKind: string
  seed: number
  comparison: Comparison
  latency: LatencyRow[]
  threshold: number
  /** Top-1 agreement ≥ threshold (max abs error when the model has no class axis is not judged). */
  thresholdMet: boolean
  /**
   * Which variant an agent should run: int8 when something was quantized, it meets the threshold
   * and (when latency was measured) is faster than fp32 at the smallest batch measured, else fp32.
   */
  recommended: 'int8' | 'fp32'
  machine: string
  sessionOptions: string
  /** The accuracy-aware search's outcome, when it ran (search.ts; its own inputs, not these). */
  search?: SearchSummary
}

/** What the report keeps of a search: the sensitivity ranking stays out (one line per layer). */
export type SearchSummary = Omit<SearchResult, 'ranking'> & { seed: number }

export interface EvaluateOptions {
  specs: readonly InputSpec[]
  samples: number
  seed: number
  threshold: number
  kind?: SampleKind
  /** The outputs top-1 agreement is judged on (`--class-output`); default: every output that has one. */
  classOutputs?: readonly string[]
  /** Latency batches (default: 1 and 8, or the model's fixed batch size; see latencyBatches). */
  batches?: readonly number[]
  rounds?: number
  sessionOptions?: ort.InferenceSession.SessionOptions
  /** fp32 with the int8 model's graph rewrites, to tell quantization's share of the speedup. */
  fp32Rewritten?: Uint8Array
}

export async function evaluateQuantization(fp32: Uint8Array, int8: Uint8Array, quantize: QuantizeReport, o: EvaluateOptions): Promise<EvaluationReport> {
  const sessionOptions = o.sessionOptions ?? DEFAULT_SESSION_OPTIONS
  const comparison = await compareModels(fp32, int8, sampleFeeds(o.specs, o.samples, o.seed, o.kind), sessionOptions, o.classOutputs)
  const latency: LatencyRow[] = []
  for (const batch of o.batches ?? latencyBatches(o.specs)) {
    const specs = withBatch(o.specs, batch)
    if (specs === undefined) continue
    const feeds = sampleFeeds(specs, 1, o.seed + 17, o.kind)[0]!
    const models = [
      { label: 'fp32', bytes: fp32 },
      { label: 'int8', bytes: int8 },
      ...(o.fp32Rewritten ? [{ label: 'fp32-rewritten', bytes: o.fp32Rewritten }] : []),
    ]
    // Fewer rounds for bigger batches: the time budget is what bounds a slow model anyway.
    const results = await measureLatency(models, feeds, { rounds: Math.max(10, Math.round((o.rounds ?? 100) / Math.sqrt(batch))), options: sessionOptions })
    const [f, q, r] = results as [LatencyResult, LatencyResult, LatencyResult | undefined]
    latency.push({ batch, fp32: f, int8: q, ...(r && { fp32Rewritten: r }), speedup: f.p50 / q.p50 })
  }
  const agreement = comparison.top1Agreement
  const thresholdMet = agreement !== undefined && agreement >= o.threshold
  const smallest = smallestBatch(latency)
  return {
    quantize,
    quantizedAs: quantizedAs(quantize, int8),
    inputs: o.specs.map((s) => ({ name: s.name, shape: s.shape })),
    sampleKind: o.kind ?? [...new Set(o.specs.map((s) => s.kind ?? 'auto'))].join('+'),
    seed: o.seed,
    comparison,
    latency,
    threshold: o.threshold,
    thresholdMet,
    recommended: !nothingQuantized(quantize) && thresholdMet && (smallest === undefined || smallest.speedup > 1) ? 'int8' : 'fp32',
    machine: machineDescription(),
    sessionOptions: describeSessionOptions(sessionOptions),
  }
}

/** No node was quantized: the "int8" model is the fp32 one with the graph rewrites alone. */
export function nothingQuantized(q: Pick<QuantizeReport, 'quantized'>): boolean {
  return Object.keys(q.quantized).length === 0
}

/** The latency row at the smallest batch measured (batch 1 unless the model's batch is fixed). */
function smallestBatch(latency: readonly LatencyRow[]): LatencyRow | undefined {
  return latency.reduce<LatencyRow | undefined>((best, row) => (best === undefined || row.batch < best.batch ? row : best), undefined)
}

/** The kernel each op becomes when quantized dynamically (dynamic.ts); a static op keeps its type between Q/DQ pairs. */
const DYNAMIC_KERNEL: Readonly<Record<string, string>> = { MatMul: 'DynamicQuantizeMatMul', Gemm: 'DynamicQuantizeMatMul', Conv: 'ConvInteger' }

/**
 * Which quantized op types run static QDQ and which dynamic. In static mode an op type is
 * quantized one way for all its nodes (quantize.ts), so the int8 graph tells: an op type whose
 * dynamic kernel is in it was quantized dynamically.
 */
function quantizedAs(q: QuantizeReport, int8: Uint8Array): QuantizedAs {
  if (q.mode === 'dynamic') return { static: {}, dynamic: { ...q.quantized } }
  const kernels = new Set(decodeModel(int8).graph?.node.map((n) => n.opType) ?? [])
  const split: QuantizedAs = { static: {}, dynamic: {} }
  for (const [op, count] of Object.entries(q.quantized)) {
    const kernel = DYNAMIC_KERNEL[op]
    split[kernel !== undefined && kernels.has(kernel) ? 'dynamic' : 'static'][op] = count
  }
  return split
}

/**
 * The report a published int8 variant carries (VariantReport, what the edge records and agents
 * judge by): top-1 agreement, the outputs it was judged on when they were named
 * (`--class-output`), max abs error and the number of samples. Undefined when agreement cannot be
 * measured (no output has a class axis): no threshold could judge the variant.
 *
 * Outputs judged by default are left out: the default is what every edge assumes, and an edge
 * older than the int8_class_output parameter refuses a publish that sends it.
 */
export function variantReport(r: Pick<EvaluationReport, 'comparison'>): VariantReport | undefined {
  const { top1Agreement, judgedOutputs, outputsNamed, maxAbsError, samples } = r.comparison
  return top1Agreement === undefined ? undefined : { top1Agreement, ...(outputsNamed && { classOutputs: judgedOutputs }), maxAbsError, samples }
}

/** CPU, cores, memory, Node and onnxruntime versions, and the load at the time of measuring. */
export function machineDescription(): string {
  const cpu = cpus()[0]?.model.trim() ?? 'unknown CPU'
  const load = loadavg()[0]!.toFixed(1)
  return `${cpu}, ${cpus().length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, onnxruntime-node ${ORT_VERSION}, load average ${load}`
}

function describeSessionOptions(o: ort.InferenceSession.SessionOptions): string {
  return [
    `graph optimization ${o.graphOptimizationLevel ?? 'all'}`,
    `${o.executionMode ?? 'sequential'} execution`,
    `intra-op threads ${o.intraOpNumThreads ?? 'default'}`,
    spinningAllowed(o) ? 'threads spin while idle' : 'threads do not spin',
  ].join(', ')
}

function searchLine(s: SearchSummary): string {
  const on = `${s.samples} search samples (seed ${s.seed}, ${s.positions} positions)`
  const before = `quantized as asked, top-1 is ${pct(s.quantizedAgreement)} on ${on}`
  if (s.fp32Layers.length === 0) return `search:      ${before}: ${s.met ? 'no layer needs fp32' : 'no layer to leave in fp32'}`
  const shown = s.fp32Layers.length > 12 ? `${s.fp32Layers.slice(0, 12).join(', ')}, …` : s.fp32Layers.join(', ')
  const after = `${s.fp32Layers.length} of ${s.candidates} layers left fp32 give ${pct(s.agreement)} there${s.met ? '' : `, still < ${pct(s.threshold)}`}`
  return [`search:      ${before} (< ${pct(s.threshold)});`, `             ${after} (${s.evaluations} runs): ${shown}`].join('\n')
}

/**
 * Which outputs the threshold judges. By default the lowest agreement of several, an embedding's
 * arg-max among them, which can refuse a good model: the line then says how to name the class output.
 */
function judgedOnLine(c: Comparison): string | undefined {
  if (c.judgedOutputs.length === 0) return undefined
  const names = c.judgedOutputs.join(', ')
  if (c.outputsNamed) return `judged on:   ${names} (--class-output); the other outputs count for max abs error only`
  if (c.judgedOutputs.length === 1) return `judged on:   ${names} (the only output with a top-1 agreement)`
  return `judged on:   ${names}: the lowest of their agreements (--class-output names the class output to judge on it alone)`
}

const kb = (bytes: number) => `${(bytes / 1024).toFixed(1)} KiB`
const pct = (x: number) => `${(x * 100).toFixed(2)}%`
const ms = (x: number) => x.toFixed(3)

/** The report as text for a terminal. */
export function formatReport(r: EvaluationReport, names: { input: string; output: string }): string {
  const q = r.quantize
  const lines: string[] = []
  lines.push(`depinfer-quantize ${names.input} → ${names.output}`)
  const staticCounts = Object.entries(r.quantizedAs.static).map(([op, n]) => `${op} ${n}`)
  const dynamicCounts = Object.entries(r.quantizedAs.dynamic).map(([op, n]) => `${op} ${n}`)
  const dynamicText = 'dynamic (int8 weights, activations quantized at run time)'
  const modeText =
    q.mode === 'dynamic'
      ? dynamicText
      : staticCounts.length > 0
        ? `static (int8 weights, activation ranges calibrated on sample inputs, QDQ format)${dynamicCounts.length > 0 ? ' and dynamic' : ''}`
        : `${dynamicText}: --calibrate quantized nothing statically (it calibrates Conv; MatMul and Gemm stay dynamic)`
  lines.push(`mode:        ${modeText}`)
  const rewrites = [q.foldedBatchNorms > 0 && `${q.foldedBatchNorms} BatchNormalization folded into Conv`, q.fusedHardSwish > 0 && `${q.fusedHardSwish} hard-swish → x·HardSigmoid(x)`].filter(Boolean)
  if (rewrites.length > 0) lines.push(`rewrites:    ${rewrites.join(', ')}`)
  // Which op ran which way, once the modes are mixed (static mode's MatMul/Gemm stay dynamic).
  const counts =
    staticCounts.length > 0 && dynamicCounts.length > 0
      ? `static QDQ: ${staticCounts.join(', ')}; dynamic: ${dynamicCounts.join(', ')}`
      : [...staticCounts, ...dynamicCounts].join(', ')
  lines.push(`quantized:   ${counts || 'nothing'}`)
  if (r.search) lines.push(searchLine(r.search))
  const skipped = q.nodes.filter((n) => n.skipped !== undefined)
  if (skipped.length > 0) {
    const reasons = new Map<string, number>()
    for (const n of skipped) reasons.set(`${n.opType}: ${n.skipped}`, (reasons.get(`${n.opType}: ${n.skipped}`) ?? 0) + 1)
    lines.push(`left fp32:   ${[...reasons].map(([reason, n]) => `${n}× ${reason}`).join('; ')}`)
  }
  lines.push(`size:        fp32 ${kb(q.fp32Bytes)} → int8 ${kb(q.int8Bytes)} (${(q.int8Bytes / q.fp32Bytes).toFixed(2)}x)`)
  lines.push(`machine:     ${r.machine}`)
  lines.push(`session:     ${r.sessionOptions}`)
  lines.push(`inputs:      ${r.inputs.map((i) => `${i.name}=${i.shape.join(',')}`).join(' ')}`)
  if (r.latency.length > 0) {
    lines.push('latency p50 (ms), runs alternating between the models:')
    for (const row of r.latency) {
      const rewritten = row.fp32Rewritten ? `   fp32 rewritten ${ms(row.fp32Rewritten.p50)} (${(row.fp32.p50 / row.fp32Rewritten.p50).toFixed(2)}x)` : ''
      lines.push(`  batch ${String(row.batch).padEnd(3)} fp32 ${ms(row.fp32.p50)}   int8 ${ms(row.int8.p50)}   speedup ${row.speedup.toFixed(2)}x${rewritten}   (${row.int8.runs} runs)`)
    }
  }
  lines.push(`agreement:   ${r.comparison.samples} seeded samples (${r.sampleKind} inputs, seed ${r.seed})`)
  const judged = new Set(r.comparison.judgedOutputs)
  for (const o of r.comparison.outputs) {
    if (o.exact) {
      const equal = o.top1Agreement === undefined ? 'no elements' : `equal in ${pct(o.top1Agreement)} of ${o.positions} elements${judged.has(o.name) ? '' : ' (not judged)'}`
      lines.push(`  ${o.name}: ${equal} (not floating point: compared for equality)`)
      continue
    }
    const top1 = o.top1Agreement === undefined ? 'top-1 n/a (no class axis)' : `top-1 ${pct(o.top1Agreement)} of ${o.positions} positions${judged.has(o.name) ? '' : ' (not judged)'}`
    lines.push(`  ${o.name}: ${top1}, max abs error ${o.maxAbsError.toPrecision(3)}, mean abs error ${o.meanAbsError.toPrecision(3)}`)
  }
  const judgedLine = judgedOnLine(r.comparison)
  if (judgedLine !== undefined) lines.push(judgedLine)
  const agreement = r.comparison.top1Agreement
  lines.push(
    `threshold:   top-1 ≥ ${pct(r.threshold)}: ${agreement === undefined ? 'cannot be judged (no class axis)' : r.thresholdMet ? 'MET' : `NOT met (${pct(agreement)})`}`,
  )
  const smallest = smallestBatch(r.latency)
  if (smallest) {
    const ratio = smallest.speedup >= 1 ? `${smallest.speedup.toFixed(2)}x faster` : `${(1 / smallest.speedup).toFixed(2)}x slower`
    lines.push(`speed:       int8 is ${ratio} than fp32 at batch ${smallest.batch}`)
  }
  const why = nothingQuantized(q)
    ? 'nothing was quantized: the int8 model is the fp32 one'
    : !r.thresholdMet
      ? 'int8 misses the agreement threshold'
      : r.recommended === 'fp32'
        ? 'int8 meets the threshold but is not faster on this machine'
        : smallest
          ? 'meets the threshold and is faster'
          : 'meets the threshold; speed not measured'
  lines.push(`verdict:     run ${r.recommended} (${why})`)
  return lines.join('\n')
}
