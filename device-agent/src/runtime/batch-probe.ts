/**
 * Whether a model's dimension 0 is a batch axis: the model, run on two rows, must answer each
 * row exactly as it answers that row alone. A dynamic first dimension does not say so (a
 * CumSum or Softmax along axis 0, a Transpose, a reduction over it), and batching such a model
 * would answer each job with its neighbours' data mixed in: wrong, and a leak of one caller's
 * input to another. Checked once, when the model loads, on seeded inputs; a model it cannot
 * check runs unbatched.
 *
 * The two probe rows differ in magnitude (floats within ±1 and within ±100; 8- and 16-bit
 * integers 0 or 1 and across a wide range), so that what is computed over the whole batch
 * tensor shows: a normalisation by its max or mean (a UINT8 image divided by its brightest
 * pixel), or the per-tensor scale of a dynamically quantized int8 model. Rows of one range
 * alone hid both: the max, the mean and the scale came out the same with or without the other row.
 */
import { concatBytes, encodeJsonRows, float16BitsToNumber, seededRandom, typedElements, type Datatype, type RawTensor, type TensorSpec, messageOf } from '@depinfer/shared'
import { splitOutputs } from './batch-stacking.js'
import type { ModelSession } from './model-session.js'

/** The size given to the other dynamic dimensions of the probe's inputs: small, and a multiple of the 32 many image models need. */
const PROBE_DIM = 32
/**
 * Batched and single runs use different kernels: floats may differ this much and still agree.
 * The absolute part is a share of the output's own largest value: a fixed 1e-4 let through
 * every difference in an output whose values are all about that small (a softmax over 10,000
 * classes).
 */
const ABSOLUTE_TOLERANCE_SHARE = 1e-4
const FP16_ABSOLUTE_TOLERANCE_SHARE = 1e-3
const RELATIVE_TOLERANCE = 1e-3
/** The wide probe row's floats lie within ± this. */
const WIDE_FLOAT_RANGE = 100
/** The wide probe row's integers, per datatype: [lowest, highest]. Wider integers stay 0 or 1 (indices, masks, lengths). */
const WIDE_INTEGER_RANGE: Partial<Record<Datatype, readonly [number, number]>> = {
  UINT8: [0, 255],
  INT8: [-128, 127],
  UINT16: [0, 1000],
  INT16: [-1000, 1000],
}

/**
 * The most elements a probe row of all inputs together may have (1M floats, 4 MB): the row's
 * size comes from the model's declared shape, and a 106-byte published model declaring
 * [N, 30000, 30000] made the probe build arrays until the agent died of a heap out of memory,
 * at every start (an audit). Such a model is not probed, and runs unbatched.
 */
export const MAX_PROBE_ROW_ELEMENTS = 1 << 20

/**
 * How long one probe run may take where a session can stop it (a model's own process: models
 * published on the edge), so that a graph slow on any input does not hold the model's load.
 */
const PROBE_RUN_MS = 30_000

/**
 * Undefined when the model answers rows independently; otherwise why batching stays off.
 * `probeRunMs`: how long each probe run may take (PROBE_RUN_MS; tests shorten it).
 */
export async function batchingProblem(session: ModelSession, inputs: readonly TensorSpec[], probeRunMs = PROBE_RUN_MS): Promise<string | undefined> {
  const rowElements = inputs.reduce((sum, spec) => sum + probeRowElements(spec), 0)
  if (rowElements > MAX_PROBE_ROW_ELEMENTS) return `its declared input shapes make a row of ${rowElements} elements, too large to check on probe inputs`
  const random = seededRandom(0x5eed)
  const rows = inputs.map((spec) => [probeRow(spec, random, 'unit'), probeRow(spec, random, 'wide')] as const)
  const tensor = (spec: TensorSpec, parts: readonly Uint8Array[]): RawTensor => ({
    name: spec.name,
    datatype: spec.datatype,
    shape: [parts.length, ...spec.shape.slice(1).map((d) => (d === -1 ? PROBE_DIM : d))],
    data: concatBytes(parts),
  })
  let together: RawTensor[][] | undefined
  let alone: RawTensor[][]
  try {
    const run = (tensors: RawTensor[]) => session.run(tensors, [], { deadlineAt: performance.now() + probeRunMs })
    together = splitOutputs(await run(inputs.map((spec, i) => tensor(spec, rows[i]!))), [1, 1])
    alone = await Promise.all([0, 1].map((r) => run(inputs.map((spec, i) => tensor(spec, [rows[i]![r]!])))))
  } catch (error) {
    return `it could not be checked on probe inputs (${messageOf(error).split('\n')[0]})`
  }
  if (!together) return 'its outputs do not have one row per input row'
  for (const [r, answers] of together.entries()) {
    for (const answer of answers) {
      const single = alone[r]!.find((t) => t.name === answer.name)
      if (!single || !sameValues(answer, single)) return `output ${answer.name} of a row depends on the other rows of its batch`
    }
  }
  return undefined
}

/**
 * One row's bytes for `spec`, seeded. `unit`: floats within ±1, integers 0 or 1 (valid as indices
 * and masks). `wide`: floats within ±WIDE_FLOAT_RANGE, 8- and 16-bit integers across
 * WIDE_INTEGER_RANGE (a model that takes those as indices fails the probe's run and stays unbatched).
 */
function probeRow(spec: TensorSpec, random: () => number, range: 'unit' | 'wide'): Uint8Array {
  const count = probeRowElements(spec)
  const integers = range === 'wide' ? WIDE_INTEGER_RANGE[spec.datatype] : undefined
  const value = isFloat(spec.datatype)
    ? () => (random() * 2 - 1) * (range === 'wide' ? WIDE_FLOAT_RANGE : 1)
    : integers
      ? () => integers[0] + Math.floor(random() * (integers[1] - integers[0] + 1))
      : () => (random() < 0.5 ? 0 : 1)
  const values = Array.from({ length: count }, value)
  return encodeJsonRows(spec.datatype, [spec.datatype === 'BOOL' ? values.map(Boolean) : values], spec.name)
}

/** Elements of one probe row of `spec`: its declared dimensions after the first, PROBE_DIM for the dynamic ones. */
const probeRowElements = (spec: TensorSpec): number => spec.shape.slice(1).reduce((n, d) => n * (d === -1 ? PROBE_DIM : d), 1)

const isFloat = (datatype: Datatype) => datatype === 'FP32' || datatype === 'FP64' || datatype === 'FP16'

function sameValues(a: RawTensor, b: RawTensor): boolean {
  if (a.datatype !== b.datatype || a.shape.length !== b.shape.length || a.shape.some((d, i) => d !== b.shape[i])) return false
  const x = typedElements(a.datatype, a.data)
  const y = typedElements(b.datatype, b.data)
  if (!isFloat(a.datatype)) return x.every((v, i) => v === y[i])
  const number = (values: typeof x, i: number) => (a.datatype === 'FP16' ? float16BitsToNumber(values[i] as number) : (values[i] as number))
  let largest = 0
  for (let i = 0; i < y.length; i++) {
    const v = Math.abs(number(y, i))
    if (v > largest && v !== Infinity) largest = v
  }
  const absoluteTolerance = largest * (a.datatype === 'FP16' ? FP16_ABSOLUTE_TOLERANCE_SHARE : ABSOLUTE_TOLERANCE_SHARE)
  for (let i = 0; i < x.length; i++) {
    const u = number(x, i)
    const v = number(y, i)
    if (Object.is(u, v)) continue
    // An infinite (or NaN) value agrees only with itself: a relative tolerance of Infinity would
    // take any batched value for it (x divided by the batch's spread is ±Infinity alone).
    if (!Number.isFinite(u) || !Number.isFinite(v)) return false
    if (!(Math.abs(u - v) <= absoluteTolerance + RELATIVE_TOLERANCE * Math.abs(v))) return false
  }
  return true
}
