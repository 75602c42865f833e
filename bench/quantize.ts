/**
 * `npx tsx bench/quantize.ts [--models cls,rec] [--threads N]` — int8 vs fp32 on the bundled
 * PaddleOCR models (issue 6, item 3): for each quantization variant, file size, latency p50 at
 * batch 1 and 8 (and the speedup over the published fp32 model), top-1 agreement with fp32 and
 * the largest output difference, as markdown tables.
 *
 * "fp32 rewritten" is the fp32 model with the quantizer's graph rewrites (BatchNormalization
 * folded into Conv, hard-swish as x·HardSigmoid(x)) and nothing quantized: the part of any
 * speedup that does not come from int8. Latency runs alternate between all variants of a model
 * (one run each per round), so load from other processes on the machine hits them alike.
 */
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { bundledModelPath, type BundledModelName } from '../device-agent/src/models/bundled.js'
import {
  DEFAULT_SESSION_OPTIONS,
  compareModels,
  measureLatency,
  preprocessModel,
  quantizeModel,
  sampleFeeds,
  searchFp32Layers,
  type Comparison,
  type InputSpec,
  type QuantizeOptions,
  type SampleKind,
} from '../device-agent/src/quantize/index.js'
import { machineLine } from './machine.js'
import { recordSummary } from './summary.js'
import { keepOrtTelemetryOff } from '../device-agent/src/runtime/ort-telemetry.js'

keepOrtTelemetryOff()

interface Variant {
  label: string
  /** Quantization options; `calibrate` adds seeded calibration inputs (static mode). */
  options?: QuantizeOptions & { calibrate?: boolean }
  /** The fp32 rewrites only. */
  rewrittenOnly?: boolean
  /** Leave the layers an accuracy-aware search picks (on its own inputs) in fp32. */
  search?: boolean
}

interface ModelPlan {
  name: BundledModelName
  shape: number[]
  kind: SampleKind
  samples: number
  rounds: number
  variants: Variant[]
}

const PLANS: Record<string, ModelPlan> = {
  cls: {
    name: 'ppocr-cls',
    shape: [1, 3, 48, 192],
    kind: 'text-line',
    samples: 200,
    rounds: 200,
    variants: [
      { label: 'fp32 rewritten (no int8)', rewrittenOnly: true },
      { label: 'dynamic, per tensor', options: {} },
      { label: 'dynamic, per channel', options: { perChannel: true } },
      { label: 'dynamic, per channel, stem + depthwise fp32', options: { perChannel: true, excludeDepthwise: true, excludeFirst: true } },
      { label: 'static QDQ, per channel', options: { perChannel: true, calibrate: true } },
      { label: 'static QDQ, per channel, depthwise fp32', options: { perChannel: true, excludeDepthwise: true, calibrate: true } },
      { label: 'static QDQ, per channel, accuracy-aware fallback', options: { perChannel: true, calibrate: true }, search: true },
    ],
  },
  rec: {
    name: 'ppocr-rec',
    shape: [1, 3, 48, 320],
    // Upright lines: the recognizer runs after the direction classifier has turned them around.
    kind: 'text-line-upright',
    samples: 40,
    rounds: 40,
    variants: [
      { label: 'fp32 rewritten (no int8)', rewrittenOnly: true },
      { label: 'dynamic, MatMul only, per channel', options: { perChannel: true, ops: ['MatMul', 'Gemm'] } },
      { label: 'dynamic, per channel', options: { perChannel: true } },
      { label: 'static QDQ convs + dynamic MatMul, per channel', options: { perChannel: true, calibrate: true } },
      {
        // The layers a per-layer sensitivity run found costliest (each alone: 92–96% agreement).
        label: 'static QDQ convs + dynamic MatMul, per channel, first 7 convs fp32',
        options: { perChannel: true, calibrate: true, exclude: ['p2o.Conv.0', 'p2o.Conv.1', 'p2o.Conv.2', 'p2o.Conv.3', 'p2o.Conv.4', 'p2o.Conv.5', 'p2o.Conv.6'] },
      },
      { label: 'static QDQ convs + dynamic MatMul, per channel, accuracy-aware fallback', options: { perChannel: true, calibrate: true }, search: true },
    ],
  },
}

const { values } = parseArgs({ options: { models: { type: 'string' }, threads: { type: 'string' } } })
const models = (values.models ?? 'cls,rec').split(',').map((m) => m.trim())
const threads = values.threads === undefined ? undefined : Number(values.threads)
// As the agent runs its sessions (threads that do not spin), with --threads if given.
const sessionOptions = { ...DEFAULT_SESSION_OPTIONS, ...(threads !== undefined && { intraOpNumThreads: threads }) }

console.log(`# int8 quantization: fp32 vs int8 (bench/quantize.ts)\n\n${machineLine()}`)
console.log(`onnxruntime session: graph optimization all, sequential, intra-op threads ${threads ?? 'default'}, threads do not spin\n`)

for (const key of models) {
  const plan = PLANS[key]
  if (plan === undefined) throw new Error(`unknown model ${key} (one of ${Object.keys(PLANS).join(', ')})`)
  const fp32 = readFileSync(bundledModelPath(plan.name))
  const specs: InputSpec[] = [{ name: 'x', shape: plan.shape, dynamicBatch: true, kind: plan.kind }]
  const evaluation = sampleFeeds(specs, plan.samples, 1)
  const calibration = sampleFeeds(specs, 32, 1_000_004)
  // The search's own inputs (a seed as depinfer-quantize --accuracy-aware picks it, as many as it
  // picks by default): neither calibration nor evaluation inputs.
  const searchInputs = (count: number) => sampleFeeds(specs, count, 2_000_004)
  const built: { label: string; bytes: Uint8Array; comparison?: Comparison }[] = [{ label: 'fp32 (published)', bytes: fp32 }]
  for (const v of plan.variants) {
    const { calibrate, ...rest } = v.options ?? {}
    const options: QuantizeOptions = { ...rest, ...(calibrate && { calibration }) }
    let label = v.label
    if (v.search) {
      options.calibrationCache = new Map()
      const found = await searchFp32Layers(fp32, options, { threshold: 0.99, sampleFeeds: searchInputs, sessionOptions })
      options.exclude = [...(options.exclude ?? []), ...found.fp32Layers]
      label += found.fp32Layers.length === 0 ? ' (no layer needed fp32)' : ` (${found.fp32Layers.length} of ${found.candidates} layers fp32)`
    }
    const bytes = v.rewrittenOnly ? preprocessModel(fp32) : (await quantizeModel(fp32, options)).bytes
    built.push({ label, bytes, comparison: await compareModels(fp32, bytes, evaluation, sessionOptions) })
  }
  const latency = new Map<number, Map<string, number>>()
  for (const batch of [1, 8]) {
    const feeds = sampleFeeds([{ ...specs[0]!, shape: [batch, ...plan.shape.slice(1)] }], 1, 17)[0]!
    const rounds = Math.max(10, Math.round(plan.rounds / Math.sqrt(batch)))
    const results = await measureLatency(built, feeds, { rounds, maxMs: 60_000, options: sessionOptions })
    latency.set(batch, new Map(results.map((r) => [r.label, r.p50])))
  }
  const base = (batch: number) => latency.get(batch)!.get('fp32 (published)')!
  console.log(`## ${plan.name}, input ${plan.shape.join('x')} (batch 8: 8x${plan.shape.slice(1).join('x')}), ${plan.samples} seeded ${plan.kind} samples\n`)
  console.log('| variant | size KiB | p50 b1 ms | speedup b1 | p50 b8 ms | speedup b8 | top-1 agreement | max abs err |')
  console.log('|---|---|---|---|---|---|---|---|')
  for (const b of built) {
    const [l1, l8] = [latency.get(1)!.get(b.label)!, latency.get(8)!.get(b.label)!]
    const c = b.comparison
    const agreement = c?.top1Agreement === undefined ? '—' : `${(c.top1Agreement * 100).toFixed(2)}%`
    console.log(
      `| ${b.label} | ${(b.bytes.length / 1024).toFixed(0)} | ${l1.toFixed(3)} | ${(base(1) / l1).toFixed(2)}x | ${l8.toFixed(2)} | ${(base(8) / l8).toFixed(2)}x | ${agreement} | ${c ? c.maxAbsError.toPrecision(3) : '—'} |`,
    )
  }
  console.log('')
  // The target: an int8 variant at least 1.5x faster than fp32 with ≥ 99% top-1 agreement.
  const accurate = built.filter((b) => b.comparison?.top1Agreement !== undefined && b.comparison.top1Agreement >= 0.99 && !b.label.startsWith('fp32'))
  const best = Math.max(0, ...accurate.map((b) => base(1) / latency.get(1)!.get(b.label)!))
  recordSummary({ bench: 'quantize', metric: `${plan.name}: best int8 speedup (batch 1) with ≥ 99% top-1 agreement`, value: accurate.length ? `${best.toFixed(2)}x` : 'none reaches 99%', target: '≥ 1.5x', met: best >= 1.5 })
}
