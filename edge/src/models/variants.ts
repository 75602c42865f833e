/**
 * The checks a variant of a published version must pass before it becomes part of the version:
 * a file the edge has read (an uploaded ONNX model) whose inputs and outputs are exactly the
 * version's, so a device running it takes the same requests and gives answers of the same form.
 * Whether it is *good enough* is the publisher's report, which the edge cannot re-measure.
 */
import type { TensorSpec } from '@depinfer/shared'

/** The variant a publish names cannot be part of the version; `field` names the offending part. */
export class VariantRejectedError extends Error {
  override name = 'VariantRejectedError'
  constructor(
    message: string,
    readonly field: string,
  ) {
    super(message)
  }
}

const FLOAT_DATATYPES: ReadonlySet<string> = new Set(['FP16', 'FP32', 'FP64'])

/**
 * Throws VariantRejectedError when a name the variant's report says agreement was judged on
 * (`int8_class_output`) is not an output of the model, or is one with no top-1 agreement to judge
 * (floating point without a fixed class axis of 2 or more, as depinfer-quantize refuses it): the
 * report would describe a measurement the version cannot have.
 */
export function checkClassOutputs(kind: string, model: { outputs: readonly TensorSpec[] }, classOutputs: readonly string[]): void {
  const field = `${kind}_class_output`
  for (const name of classOutputs) {
    const quoted = JSON.stringify(name.slice(0, 100))
    const output = model.outputs.find((t) => t.name === name)
    if (output === undefined) throw new VariantRejectedError(`${field} ${quoted} is not an output of the model (its outputs: ${model.outputs.map((t) => t.name).join(', ')})`, field)
    const last = output.shape.at(-1)
    if (FLOAT_DATATYPES.has(output.datatype) && (last === undefined || last < 2)) {
      throw new VariantRejectedError(`${field} ${quoted} has no class axis to judge top-1 agreement on: it is ${output.datatype} ${describeShape(output.shape)}, not [..., classes ≥ 2]`, field)
    }
  }
}

const describeShape = (shape: readonly number[]) => `[${shape.join(',')}]`

/**
 * Throws VariantRejectedError naming the first tensor field (e.g. `int8.inputs[0].shape`) where
 * the variant's tensors differ from the model's: count, then name, datatype and shape in order
 * (onnxruntime feeds and returns tensors by name, but the v2 metadata lists them in this order).
 */
export function checkSameTensors(
  kind: string,
  model: { inputs: readonly TensorSpec[]; outputs: readonly TensorSpec[] },
  variant: { inputs: readonly TensorSpec[]; outputs: readonly TensorSpec[] },
): void {
  for (const side of ['inputs', 'outputs'] as const) {
    const expected = model[side]
    const actual = variant[side]
    if (actual.length !== expected.length) {
      throw new VariantRejectedError(
        `the ${kind} variant has ${actual.length} ${side} but the model has ${expected.length} (${expected.map((t) => t.name).join(', ')})`,
        `${kind}.${side}`,
      )
    }
    for (const [index, want] of expected.entries()) {
      const got = actual[index]!
      const field = `${kind}.${side}[${index}]`
      if (got.name !== want.name) {
        throw new VariantRejectedError(`the ${kind} variant's ${side}[${index}] is named ${got.name} but the model's is ${want.name}`, `${field}.name`)
      }
      if (got.datatype !== want.datatype) {
        throw new VariantRejectedError(`the ${kind} variant's ${side.slice(0, -1)} ${got.name} is ${got.datatype} but the model's is ${want.datatype}`, `${field}.datatype`)
      }
      if (got.shape.length !== want.shape.length || got.shape.some((dim, i) => dim !== want.shape[i])) {
        throw new VariantRejectedError(
          `the ${kind} variant's ${side.slice(0, -1)} ${got.name} has shape ${describeShape(got.shape)} but the model's has ${describeShape(want.shape)} (-1 = dynamic)`,
          `${field}.shape`,
        )
      }
    }
  }
}
