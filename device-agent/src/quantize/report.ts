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
  measureLatency,
  sampleFeeds,
  withBatch,
  type Comparison,
  type InputSpec,
  type LatencyResult,
} from './evaluate.js'
import type { QuantizeReport } from './quantize.js'
import type { SampleKind } from './samples.js'

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

export interface EvaluationReport {
  quantize: QuantizeReport
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
   * Which variant an agent should run: int8 when it meets the threshold and (when latency was
   * measured) is faster than fp32 at batch 1, else fp32.
   */
  recommended: 'int8' | 'fp32'
  machine: string
  sessionOptions: string
}

export interface EvaluateOptions {
  specs: readonly InputSpec[]
  samples: number
  seed: number
  threshold: number
  kind?: SampleKind
  /** Latency batches (default 1 and 8; a batch is skipped when the model's batch is fixed). */
  batches?: readonly number[]
  rounds?: number
  sessionOptions?: ort.InferenceSession.SessionOptions
  /** fp32 with the int8 model's graph rewrites, to tell quantization's share of the speedup. */
  fp32Rewritten?: Uint8Array
}

export async function evaluateQuantization(fp32: Uint8Array, int8: Uint8Array, quantize: QuantizeReport, o: EvaluateOptions): Promise<EvaluationReport> {
  const sessionOptions = o.sessionOptions ?? DEFAULT_SESSION_OPTIONS
  const comparison = await compareModels(fp32, int8, sampleFeeds(o.specs, o.samples, o.seed, o.kind), sessionOptions)
  const latency: LatencyRow[] = []
  for (const batch of o.batches ?? [1, 8]) {
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
  const batch1 = latency.find((row) => row.batch === 1)
  return {
    quantize,
    inputs: o.specs.map((s) => ({ name: s.name, shape: s.shape })),
    sampleKind: o.kind ?? [...new Set(o.specs.map((s) => s.kind ?? 'auto'))].join('+'),
    seed: o.seed,
    comparison,
    latency,
    threshold: o.threshold,
    thresholdMet,
    recommended: thresholdMet && (batch1 === undefined || batch1.speedup > 1) ? 'int8' : 'fp32',
    machine: machineDescription(),
    sessionOptions: describeSessionOptions(sessionOptions),
  }
}

/**
 * The report a published int8 variant carries (VariantReport, what the edge records and agents
 * judge by): top-1 agreement, max abs error and the number of samples. Undefined when agreement
 * cannot be measured (no output has a class axis): no threshold could judge the variant.
 */
export function variantReport(r: Pick<EvaluationReport, 'comparison'>): VariantReport | undefined {
  const { top1Agreement, maxAbsError, samples } = r.comparison
  return top1Agreement === undefined ? undefined : { top1Agreement, maxAbsError, samples }
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
  ].join(', ')
}

const kb = (bytes: number) => `${(bytes / 1024).toFixed(1)} KiB`
const pct = (x: number) => `${(x * 100).toFixed(2)}%`
const ms = (x: number) => x.toFixed(3)

/** The report as text for a terminal. */
export function formatReport(r: EvaluationReport, names: { input: string; output: string }): string {
  const q = r.quantize
  const lines: string[] = []
  lines.push(`depinfer-quantize ${names.input} → ${names.output}`)
  const modeText =
    q.mode === 'dynamic'
      ? 'dynamic (int8 weights, activations quantized at run time)'
      : 'static (int8 weights, activation ranges calibrated on sample inputs, QDQ format)'
  lines.push(`mode:        ${modeText}`)
  const rewrites = [q.foldedBatchNorms > 0 && `${q.foldedBatchNorms} BatchNormalization folded into Conv`, q.fusedHardSwish > 0 && `${q.fusedHardSwish} hard-swish → x·HardSigmoid(x)`].filter(Boolean)
  if (rewrites.length > 0) lines.push(`rewrites:    ${rewrites.join(', ')}`)
  const counts = Object.entries(q.quantized).map(([op, n]) => `${op} ${n}`)
  lines.push(`quantized:   ${counts.length > 0 ? counts.join(', ') : 'nothing'}`)
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
  for (const o of r.comparison.outputs) {
    const top1 = o.top1Agreement === undefined ? 'top-1 n/a (no class axis)' : `top-1 ${pct(o.top1Agreement)} of ${o.positions} positions`
    lines.push(`  ${o.name}: ${top1}, max abs error ${o.maxAbsError.toPrecision(3)}, mean abs error ${o.meanAbsError.toPrecision(3)}`)
  }
  const agreement = r.comparison.top1Agreement
  lines.push(
    `threshold:   top-1 ≥ ${pct(r.threshold)}: ${agreement === undefined ? 'cannot be judged (no class axis)' : r.thresholdMet ? 'MET' : `NOT met (${pct(agreement)})`}`,
  )
  const batch1 = r.latency.find((row) => row.batch === 1)
  if (batch1) lines.push(`speed:       int8 is ${batch1.speedup >= 1 ? `${batch1.speedup.toFixed(2)}x faster` : `${(1 / batch1.speedup).toFixed(2)}x slower`} than fp32 at batch 1`)
  const why = !r.thresholdMet
    ? 'int8 misses the agreement threshold'
    : r.recommended === 'fp32'
      ? 'int8 meets the threshold but is not faster on this machine'
      : batch1
        ? 'meets the threshold and is faster'
        : 'meets the threshold; speed not measured'
  lines.push(`verdict:     run ${r.recommended} (${why})`)
  return lines.join('\n')
}
