/**
 * Whether a model's dimension 0 is a batch axis: the model, run on two rows, must answer each
 * row exactly as it answers that row alone. A dynamic first dimension does not say so (a
 * CumSum or Softmax along axis 0, a Transpose, a reduction over it), and batching such a model
 * would answer each job with its neighbours' data mixed in: wrong, and a leak of one caller's
 * input to another. Checked once, when the model loads, on seeded inputs; a model it cannot
 * check runs unbatched.
 */
import { concatBytes, encodeJsonRows, float16BitsToNumber, seededRandom, typedElements, type Datatype, type RawTensor, type TensorSpec, messageOf } from '@depinfer/shared'
import { splitOutputs } from './batch-stacking.js'
import type { ModelSession } from './model-session.js'

/** The size given to the other dynamic dimensions of the probe's inputs: small, and a multiple of the 32 many image models need. */
const PROBE_DIM = 32
/** Batched and single runs use different kernels: floats may differ this much and still agree. */
const ABSOLUTE_TOLERANCE = 1e-4
const RELATIVE_TOLERANCE = 1e-3

/** Undefined when the model answers rows independently; otherwise why batching stays off. */
export async function batchingProblem(session: ModelSession, inputs: readonly TensorSpec[]): Promise<string | undefined> {
  const random = seededRandom(0x5eed)
  const rows = inputs.map((spec) => [probeRow(spec, random), probeRow(spec, random)] as const)
  const tensor = (spec: TensorSpec, parts: readonly Uint8Array[]): RawTensor => ({
    name: spec.name,
    datatype: spec.datatype,
    shape: [parts.length, ...spec.shape.slice(1).map((d) => (d === -1 ? PROBE_DIM : d))],
    data: concatBytes(parts),
  })
  let together: RawTensor[][] | undefined
  let alone: RawTensor[][]
  try {
    const batched = await session.run(inputs.map((spec, i) => tensor(spec, rows[i]!)), [])
    together = splitOutputs(batched, [1, 1])
    alone = await Promise.all([0, 1].map((r) => session.run(inputs.map((spec, i) => tensor(spec, [rows[i]![r]!])), [])))
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

/** One row's bytes for `spec`: seeded values every datatype can hold (integers 0 or 1, so valid as indices and masks). */
function probeRow(spec: TensorSpec, random: () => number): Uint8Array {
  const count = spec.shape.slice(1).reduce((n, d) => n * (d === -1 ? PROBE_DIM : d), 1)
  const values = Array.from({ length: count }, () => (isFloat(spec.datatype) ? random() * 2 - 1 : random() < 0.5 ? 0 : 1))
  return encodeJsonRows(spec.datatype, [spec.datatype === 'BOOL' ? values.map(Boolean) : values], spec.name)
}

const isFloat = (datatype: Datatype) => datatype === 'FP32' || datatype === 'FP64' || datatype === 'FP16'

function sameValues(a: RawTensor, b: RawTensor): boolean {
  if (a.datatype !== b.datatype || a.shape.length !== b.shape.length || a.shape.some((d, i) => d !== b.shape[i])) return false
  const x = typedElements(a.datatype, a.data)
  const y = typedElements(b.datatype, b.data)
  if (!isFloat(a.datatype)) return x.every((v, i) => v === y[i])
  const number = (values: typeof x, i: number) => (a.datatype === 'FP16' ? float16BitsToNumber(values[i] as number) : (values[i] as number))
  for (let i = 0; i < x.length; i++) {
    const u = number(x, i)
    const v = number(y, i)
    if (!(Object.is(u, v) || Math.abs(u - v) <= ABSOLUTE_TOLERANCE + RELATIVE_TOLERANCE * Math.abs(v))) return false
  }
  return true
}
