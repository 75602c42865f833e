/**
 * Measuring an int8 model against its fp32 original with onnxruntime: output agreement on sample
 * inputs, and latency on this machine.
 */
import * as ort from 'onnxruntime-node'
import { float16BitsToNumber, messageOf } from '@depinfer/shared'
import { defaultSampleKind, generateSamples, type SampleKind } from './samples.js'
import { spinningEntries } from '../runtime/execution.js'
import { keepOrtTelemetryOff } from '../runtime/ort-telemetry.js'

// Before any session of this process (ort-telemetry.ts): the quantizer also runs inside `depinfer models publish --int8`.
keepOrtTelemetryOff()

type SessionOptions = ort.InferenceSession.SessionOptions
export type Feeds = Record<string, ort.Tensor>

/** The session options the agent uses by default (runtime/execution.ts sessionOptions with the default config). */
export const DEFAULT_SESSION_OPTIONS: SessionOptions = { graphOptimizationLevel: 'all', executionMode: 'sequential', extra: spinningEntries(false) }

/**
 * The model cannot be measured: onnxruntime refuses to load or run it on the sample inputs, or
 * an input is of a type no sample can be generated for. About the model, not a bug here.
 */
export class EvaluationError extends Error {
  override readonly name = 'EvaluationError'
}

/** A `--shape` override that does not fit the model (unknown input, rank, a fixed dimension). */
export class ShapeOverrideError extends Error {
  override readonly name = 'ShapeOverrideError'
}

/**
 * The `--shape name=d1,d2,…` options (of depinfer-quantize and `depinfer models publish --int8`)
 * as concrete sizes per input, for inputSpecs; a malformed one is a ShapeOverrideError.
 */
export function parseShapeOptions(values: readonly string[]): Map<string, number[]> {
  const shapes = new Map<string, number[]>()
  for (const value of values) {
    const match = /^([^=]+)=(\d+(?:,\d+)*)$/.exec(value)
    if (!match || match[2]!.split(',').some((d) => Number(d) < 1)) {
      throw new ShapeOverrideError(`--shape ${value}: expected name=d1,d2,… of sizes of 1 or more (e.g. x=1,3,48,192)`)
    }
    shapes.set(match[1]!, match[2]!.split(',').map(Number))
  }
  return shapes
}

/**
 * A `--class-output` that does not fit the model: it names no output of it, or an output with no
 * top-1 agreement (floating point without a fixed class axis).
 */
export class ClassOutputError extends Error {
  override readonly name = 'ClassOutputError'
}

/**
 * `action` with onnxruntime's failure as an EvaluationError: its messages span several lines
 * ("Got invalid dimensions…\n index: 1 Got: 63 Expected: 64\n Please fix…"), folded into one.
 */
async function onnxruntime<T>(what: string, action: () => Promise<T>): Promise<T> {
  try {
    return await action()
  } catch (error) {
    const message = (messageOf(error)).replace(/\s+/g, ' ').trim()
    throw new EvaluationError(`onnxruntime cannot ${what}: ${message}`, { cause: error })
  }
}

/** The input shapes of one feed, for messages ("x=1,63"). */
const describeFeeds = (feeds: Feeds) =>
  Object.entries(feeds)
    .map(([name, t]) => `${name}=${t.dims.join(',')}`)
    .join(' ')

export interface OutputComparison {
  name: string
  /**
   * Share of positions whose arg-max over the last axis (the class axis) is the same in both
   * models: per image for [N, classes], per time step for [N, T, classes]. Undefined when the
   * last axis is not a fixed-size class axis (e.g. a detector's probability map). For an output
   * that is not floating point (an ArgMax label, a mask), the share of its elements that are
   * equal: a label is the top-1 class itself.
   */
  top1Agreement?: number
  positions?: number
  /** Whether the output is compared element by element for equality (not floating point); it then has no abs errors. */
  exact?: boolean
  /** Floating-point outputs: the largest and mean absolute difference (0 for an exact output). */
  maxAbsError: number
  meanAbsError: number
}

export interface Comparison {
  /** Sample inputs run through both models. */
  samples: number
  outputs: OutputComparison[]
  /** The lowest top-1 agreement over the judged outputs (`judgedOutputs`). */
  top1Agreement?: number
  /**
   * The outputs top1Agreement is judged on: the class outputs named (`--class-output`), else
   * every output that has a top-1 agreement. The others count for maxAbsError only.
   */
  judgedOutputs: string[]
  /** Whether judgedOutputs were named rather than every output with a top-1 agreement. */
  outputsNamed: boolean
  /** The largest absolute difference over the floating-point outputs. */
  maxAbsError: number
}

/**
 * An output's values as compared: floats as Float32Array or Float64Array (FP16 widened to
 * Float32Array), anything else (integers, bools, strings) as onnxruntime gives them, compared
 * for equality.
 */
export type OutputValues = Float32Array | Float64Array | ArrayLike<unknown>

const isFloatValues = (values: OutputValues): values is Float32Array | Float64Array => values instanceof Float32Array || values instanceof Float64Array

/**
 * How many positions one run's `values` of an output add to its top-1 agreement: its elements
 * when it is not floating point (compared for equality), its class positions when it has a class
 * axis of `classes`, none otherwise (undefined).
 */
export function agreementPositions(values: OutputValues, classes: number | undefined): number | undefined {
  if (!isFloatValues(values)) return values.length
  return classes === undefined ? undefined : Math.floor(values.length / classes)
}

/** A copy of `tensor`'s values to compare, kept after the tensor is disposed. */
function outputValues(tensor: ort.Tensor): OutputValues {
  if (tensor.type === 'float16') {
    const bits = tensor.data as Uint16Array
    return Float32Array.from(bits, (b) => float16BitsToNumber(b))
  }
  const data = tensor.data
  return Array.isArray(data) ? [...data] : (data as Float32Array).slice()
}

async function sessionFor(model: Uint8Array | ort.InferenceSession, options: SessionOptions): Promise<{ session: ort.InferenceSession; owned: boolean }> {
  if (model instanceof Uint8Array) return { session: await onnxruntime('load the model', () => ort.InferenceSession.create(model, options)), owned: true }
  return { session: model, owned: false }
}

/** The class axis size of an output, when its last dimension is fixed (≥ 2). */
function classCount(session: ort.InferenceSession, name: string): number | undefined {
  const meta = session.outputMetadata.find((m) => m.name === name)
  if (!meta?.isTensor) return undefined
  const last = meta.shape.at(-1)
  return typeof last === 'number' && last >= 2 ? last : undefined
}

/** Each output's class axis size, by output name. */
const classesOf = (session: ort.InferenceSession) => new Map(session.outputNames.map((name) => [name, classCount(session, name)] as const))

const FLOAT_TYPES: ReadonlySet<string> = new Set(['float16', 'float32', 'float64', 'bfloat16'])

/**
 * The outputs top-1 agreement is judged on: `names` (undefined when none are named: every output
 * that has an agreement). A named output must be one of the model's and have an agreement to
 * judge: a class axis, or values that are not floating point (compared for equality).
 * Throws ClassOutputError, naming the option, otherwise.
 */
function judgedOutputsOf(session: ort.InferenceSession, names: readonly string[] | undefined): ReadonlySet<string> | undefined {
  if (names === undefined || names.length === 0) return undefined
  for (const name of names) {
    const meta = session.outputMetadata.find((m) => m.name === name)
    if (meta === undefined) {
      throw new ClassOutputError(`--class-output ${name}: the model has no output ${JSON.stringify(name)} (its outputs: ${session.outputNames.join(', ')})`)
    }
    if (meta.isTensor && FLOAT_TYPES.has(meta.type) && classCount(session, name) === undefined) {
      throw new ClassOutputError(
        `--class-output ${name}: top-1 agreement needs a class axis, a fixed last dimension of 2 or more, and ${name} is [${meta.shape.join(',')}]`,
      )
    }
  }
  return new Set(names)
}

/**
 * Checks `names` (`--class-output`) against the model's outputs before anything slow is done
 * with them (quantizing, a search): throws ClassOutputError as compareModels would.
 */
export async function checkClassOutputs(model: Uint8Array, names: readonly string[]): Promise<void> {
  if (names.length === 0) return
  const session = await onnxruntime('load the model', () => ort.InferenceSession.create(model, { graphOptimizationLevel: 'disabled' }))
  try {
    judgedOutputsOf(session, names)
  } finally {
    await session.release()
  }
}

/**
 * fp32's outputs on a set of inputs, computed once to compare many candidate models against
 * (the accuracy-aware search compares dozens).
 */
export interface ReferenceOutputs {
  inputs: readonly Feeds[]
  /** Per input, each output's values. */
  outputs: Record<string, OutputValues>[]
  /** Each output's class axis size (see OutputComparison.top1Agreement), by output name. */
  classes: Map<string, number | undefined>
  /** The outputs agreement is judged on, when named (Comparison.judgedOutputs). */
  judged: ReadonlySet<string> | undefined
}

export async function referenceOutputs(
  fp32: Uint8Array,
  inputs: readonly Feeds[],
  options: SessionOptions = DEFAULT_SESSION_OPTIONS,
  classOutputs?: readonly string[],
): Promise<ReferenceOutputs> {
  const { session } = await sessionFor(fp32, options)
  try {
    const classes = classesOf(session)
    const judged = judgedOutputsOf(session, classOutputs)
    const outputs: Record<string, OutputValues>[] = []
    for (const feeds of inputs) {
      const result = await onnxruntime(`run the model on inputs ${describeFeeds(feeds)}`, () => session.run(feeds))
      const kept: Record<string, OutputValues> = {}
      for (const [name, tensor] of Object.entries(result)) {
        kept[name] = outputValues(tensor)
        tensor.dispose()
      }
      outputs.push(kept)
    }
    return { inputs, outputs, classes, judged }
  } finally {
    await session.release()
  }
}

/**
 * Runs both models on every input and compares their outputs (floats within errors, the others
 * for equality). Top-1 agreement is judged on `classOutputs` when given (throws
 * ClassOutputError for a name that does not fit), else on every output that has one.
 */
export async function compareModels(
  fp32: Uint8Array | ort.InferenceSession,
  int8: Uint8Array | ort.InferenceSession,
  inputs: readonly Feeds[],
  options: SessionOptions = DEFAULT_SESSION_OPTIONS,
  classOutputs?: readonly string[],
): Promise<Comparison> {
  const a = await sessionFor(fp32, options)
  try {
    const classes = classesOf(a.session)
    const judged = judgedOutputsOf(a.session, classOutputs)
    // fp32 runs input by input alongside int8: nothing of a large model's outputs is kept.
    const run = (feeds: Feeds) => onnxruntime(`run the model on inputs ${describeFeeds(feeds)}`, () => a.session.run(feeds))
    return await compareOutputs(classes, judged, inputs, run, int8, options)
  } finally {
    if (a.owned) await a.session.release()
  }
}

/** Compares a model's outputs with fp32's, computed before (`referenceOutputs`). */
export function compareWithReference(reference: ReferenceOutputs, int8: Uint8Array | ort.InferenceSession, options: SessionOptions = DEFAULT_SESSION_OPTIONS): Promise<Comparison> {
  const byInput = new Map(reference.inputs.map((feeds, i) => [feeds, reference.outputs[i]!] as const))
  return compareOutputs(reference.classes, reference.judged, reference.inputs, async (feeds) => byInput.get(feeds)!, int8, options)
}

/** One run's outputs: onnxruntime's tensors, or values kept from a run before (`referenceOutputs`). */
type Outputs = Record<string, ort.Tensor | OutputValues>

const isTensor = (v: Outputs[string] | undefined): v is ort.Tensor => v !== undefined && 'dims' in v && 'type' in v

async function compareOutputs(
  classes: ReadonlyMap<string, number | undefined>,
  judged: ReadonlySet<string> | undefined,
  inputs: readonly Feeds[],
  fp32Run: (feeds: Feeds) => Promise<Outputs>,
  int8: Uint8Array | ort.InferenceSession,
  options: SessionOptions,
): Promise<Comparison> {
  const b = await sessionFor(int8, options)
  const values = (v: Outputs[string] | undefined): OutputValues | undefined => (isTensor(v) ? outputValues(v) : v)
  try {
    const stats = new Map<string, { agree: number; positions: number; max: number; sum: number; count: number; classes: number | undefined; exact: boolean }>()
    for (const [name, count] of classes) stats.set(name, { agree: 0, positions: 0, max: 0, sum: 0, count: 0, classes: count, exact: false })
    for (const feeds of inputs) {
      const on = `run the model on inputs ${describeFeeds(feeds)}`
      const ra = await fp32Run(feeds)
      const rb = await onnxruntime(`${on} (int8)`, () => b.session.run(feeds))
      for (const [name, s] of stats) {
        const x = values(ra[name])
        const y = values(rb[name])
        if (x === undefined || y === undefined || x.length !== y.length || isFloatValues(x) !== isFloatValues(y)) {
          throw new EvaluationError(`output ${name}: the int8 model's differs from the fp32 model's in type or size`)
        }
        if (!isFloatValues(x) || !isFloatValues(y)) {
          // Not floating point: an ArgMax label, a mask, a count. Equal or not, element by element.
          s.exact = true
          for (let i = 0; i < x.length; i++) if (x[i] === y[i]) s.agree++
          s.positions += x.length
          continue
        }
        for (let i = 0; i < x.length; i++) {
          const d = Math.abs(x[i]! - y[i]!)
          if (d > s.max || Number.isNaN(d)) s.max = Number.isNaN(d) ? Number.POSITIVE_INFINITY : d
          s.sum += d
        }
        s.count += x.length
        if (s.classes !== undefined) {
          for (let p = 0; p + s.classes <= x.length; p += s.classes) {
            if (argmax(x, p, s.classes) === argmax(y, p, s.classes)) s.agree++
            s.positions++
          }
        }
      }
      for (const t of [...Object.values(ra), ...Object.values(rb)]) if (isTensor(t)) t.dispose()
    }
    const outputs: OutputComparison[] = [...stats].map(([name, s]) => ({
      name,
      ...((s.exact || s.classes !== undefined) && s.positions > 0 && { top1Agreement: s.agree / s.positions, positions: s.positions }),
      ...(s.exact && { exact: true }),
      maxAbsError: s.max,
      meanAbsError: s.count === 0 ? 0 : s.sum / s.count,
    }))
    // An output not named still shows its agreement, but an embedding's arg-max is no verdict.
    const judgedOutputs = outputs.filter((o) => o.top1Agreement !== undefined && (judged === undefined || judged.has(o.name)))
    return {
      samples: inputs.length,
      outputs,
      ...(judgedOutputs.length > 0 && { top1Agreement: Math.min(...judgedOutputs.map((o) => o.top1Agreement!)) }),
      judgedOutputs: judgedOutputs.map((o) => o.name),
      outputsNamed: judged !== undefined,
      maxAbsError: Math.max(0, ...outputs.map((o) => o.maxAbsError)),
    }
  } finally {
    if (b.owned) await b.session.release()
  }
}

function argmax(data: Float32Array | Float64Array, offset: number, length: number): number {
  let best = 0
  for (let i = 1; i < length; i++) if (data[offset + i]! > data[offset + best]!) best = i
  return best
}

export interface LatencyResult {
  label: string
  p50: number
  p90: number
  runs: number
}

/**
 * Median and 90th-percentile latency (ms) of each model on the same feeds. Runs alternate
 * between the models (one run of each per round), so background load on a shared machine
 * slows them alike instead of skewing whichever ran during a busy moment.
 */
export async function measureLatency(
  models: readonly { label: string; bytes: Uint8Array }[],
  feeds: Feeds,
  { rounds = 100, warmup = 10, maxMs = 20_000, options = DEFAULT_SESSION_OPTIONS }: { rounds?: number; warmup?: number; maxMs?: number; options?: SessionOptions } = {},
): Promise<LatencyResult[]> {
  const sessions = await onnxruntime('load the model', () => Promise.all(models.map((m) => ort.InferenceSession.create(m.bytes, options))))
  try {
    const times = models.map(() => [] as number[])
    // Warm-up runs fail first if a model refuses the feeds; timed runs then use the same feeds.
    const on = `run the model on inputs ${describeFeeds(feeds)}`
    for (let i = 0; i < warmup; i++) for (const s of sessions) disposeAll(await onnxruntime(on, () => s.run(feeds)))
    const start = performance.now()
    for (let r = 0; r < rounds && (r < 5 || performance.now() - start < maxMs); r++) {
      for (const [i, s] of sessions.entries()) {
        const t = performance.now()
        const out = await s.run(feeds)
        times[i]!.push(performance.now() - t)
        disposeAll(out)
      }
    }
    return models.map((m, i) => {
      const sorted = times[i]!.sort((x, y) => x - y)
      return { label: m.label, p50: percentile(sorted, 0.5), p90: percentile(sorted, 0.9), runs: sorted.length }
    })
  } finally {
    await Promise.all(sessions.map((s) => s.release()))
  }
}

function disposeAll(outputs: ort.InferenceSession.ReturnType): void {
  for (const t of Object.values(outputs)) t.dispose()
}

function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
}

export interface InputSpec {
  name: string
  /** Fully resolved shape (dynamic dimensions filled in). */
  shape: number[]
  /** Whether the first dimension is dynamic (so a batch of 8 can be run). */
  dynamicBatch: boolean
  /** Each dimension's ONNX name (dim_param) where it has one: a batch size goes to every dimension named as the batch is. */
  dimNames?: (string | undefined)[]
  /** The sample inputs that suit it (see samples.ts); by shape when not given. */
  kind?: SampleKind
}

/** A dimension onnxruntime reports by its ONNX name (dim_param), not as a size or unnamed. */
const isName = (dim: number | string): dim is string => typeof dim === 'string' && dim !== ''

/**
 * Concrete shapes for a model's float inputs: `overrides` (from `--shape name=1,3,48,192`) win;
 * otherwise a dynamic batch is 1, a dynamic image height 48 and width 4× the height (a PaddleOCR
 * text line), other dynamic dimensions 32, and dimensions of the same name one size (taken from
 * an override where one names it). Throws ShapeOverrideError for an override that does not fit
 * the model, EvaluationError for an input no sample can be generated for (not float32).
 */
export async function inputSpecs(model: Uint8Array, overrides: ReadonlyMap<string, number[]> = new Map()): Promise<InputSpec[]> {
  const session = await onnxruntime('load the model', () => ort.InferenceSession.create(model, { graphOptimizationLevel: 'disabled' }))
  try {
    // A text-line input with a sequence output ([N, T, classes]) is a recognizer's: its lines
    // come upright. With a [N, classes] output it is the direction classifier's.
    const sequenceOutput = session.outputMetadata.some((m) => m.isTensor && m.shape.length === 3)
    const kindFor = (shape: number[]): SampleKind => {
      const kind = defaultSampleKind(shape)
      return kind === 'text-line' && sequenceOutput ? 'text-line-upright' : kind
    }
    const unknown = [...overrides.keys()].find((name) => !session.inputNames.includes(name))
    if (unknown !== undefined) {
      throw new ShapeOverrideError(`--shape ${unknown}: the model has no input ${JSON.stringify(unknown)} (its inputs: ${session.inputNames.join(', ')})`)
    }
    // Dimensions named alike (ONNX dim_param, e.g. `batch` of a recurrent model's input and its
    // state) must get one size, or the model cannot run on the samples: bound from --shape
    // first, then from the first input that has one.
    const named = new Map<string, number>()
    for (const meta of session.inputMetadata) {
      const override = overrides.get(meta.name)
      if (meta.isTensor && override) meta.shape.forEach((d, i) => isName(d) && !named.has(d) && override[i] !== undefined && named.set(d, override[i]))
    }
    return session.inputMetadata.map((meta) => {
      if (!meta.isTensor) throw new EvaluationError(`input ${meta.name} is not a tensor`)
      if (meta.type !== 'float32') throw new EvaluationError(`input ${meta.name} is ${meta.type}; only float32 inputs can be generated`)
      const declared = meta.shape
      const override = overrides.get(meta.name)
      if (override !== undefined) {
        if (declared.length > 0 && override.length !== declared.length) {
          throw new ShapeOverrideError(`--shape ${meta.name}: ${override.length} dimensions for a ${declared.length}-D input`)
        }
        // Said here, with the option's name, rather than by onnxruntime half-way through.
        const fixed = declared.findIndex((d, i) => typeof d === 'number' && d > 0 && d !== override[i])
        if (fixed >= 0) {
          throw new ShapeOverrideError(`--shape ${meta.name}=${override.join(',')}: dimension ${fixed} of ${meta.name} is fixed at ${String(declared[fixed])} (declared [${declared.join(',')}])`)
        }
        return { name: meta.name, shape: override, dynamicBatch: typeof declared[0] !== 'number', dimNames: namesOf(declared), kind: kindFor(override) }
      }
      const image = declared.length === 4 && declared[1] === 3
      const shape = declared.map((d, i) => {
        if (typeof d === 'number' && d > 0) return d
        const bound = isName(d) ? named.get(d) : undefined
        if (bound !== undefined) return bound
        const size = i === 0 ? 1 : image && i === 2 ? 48 : image && i === 3 ? 4 * (typeof declared[2] === 'number' ? declared[2] : 48) : 32
        if (isName(d)) named.set(d, size)
        return size
      })
      return { name: meta.name, shape, dynamicBatch: typeof declared[0] !== 'number', dimNames: namesOf(declared), kind: kindFor(shape) }
    })
  } finally {
    await session.release()
  }
}

/** Seeded sample feeds for the inputs (batch as in each spec's shape). */
export function sampleFeeds(specs: readonly InputSpec[], count: number, seed: number, kind?: SampleKind): Feeds[] {
  const perInput = specs.map((spec, i) => generateSamples(kind ?? spec.kind ?? defaultSampleKind(spec.shape), spec.shape, count, seed + i * 7919))
  return Array.from({ length: count }, (_, n) => Object.fromEntries(specs.map((spec, i) => [spec.name, new ort.Tensor('float32', perInput[i]![n]!, spec.shape)])))
}

/**
 * The specs with the batch dimension set to `batch`; undefined when an input's batch is fixed at
 * another size (the model would refuse the feeds).
 */
export function withBatch(specs: readonly InputSpec[], batch: number): InputSpec[] | undefined {
  const name = batchName(specs)
  if (specs.some((s) => !s.dynamicBatch && !carries(s, name) && s.shape[0] !== batch)) return undefined
  return specs.map((s) => ({
    ...s,
    // Dimension 0 of a batched input, and every dimension named as the batch is (a recurrent
    // model's state [layers, batch, hidden]).
    shape: s.shape.map((size, axis) => ((axis === 0 && s.dynamicBatch) || (name !== undefined && s.dimNames?.[axis] === name) ? batch : size)),
  }))
}

/** The name of the inputs' dynamic dimension 0, when it has one. */
function batchName(specs: readonly InputSpec[]): string | undefined {
  return specs.find((s) => s.dynamicBatch && s.dimNames?.[0] !== undefined)?.dimNames![0]
}

const carries = (spec: InputSpec, name: string | undefined) => name !== undefined && (spec.dimNames ?? []).includes(name)

const namesOf = (declared: readonly (number | string)[]) => declared.map((d) => (isName(d) ? d : undefined))

/**
 * The batch sizes latency is measured at: 1 and 8 when every input's batch is dynamic (in
 * dimension 0, or in a dimension named as the batch is), else the fixed batch size (none when
 * the inputs' fixed sizes disagree, or an input is a scalar).
 */
export function latencyBatches(specs: readonly InputSpec[]): number[] {
  if (specs.some((s) => s.shape.length === 0)) return []
  const name = batchName(specs)
  const fixed = new Set(specs.filter((s) => !s.dynamicBatch && !carries(s, name)).map((s) => s.shape[0]!))
  if (fixed.size === 0) return [1, 8]
  return fixed.size === 1 ? [...fixed] : []
}
