/**
 * A variant must have exactly its model's inputs and outputs; the first difference is named as a
 * field. The outputs its report was judged on must be outputs of the model with a top-1 agreement.
 */
import { describe, expect, it } from 'vitest'
import type { TensorSpec } from '@depinfer/shared'
import { checkClassOutputs, checkSameTensors, VariantRejectedError } from './variants.js'

const x: TensorSpec = { name: 'x', datatype: 'FP32', shape: [-1, 3, -1, -1] }
const y: TensorSpec = { name: 'y', datatype: 'FP32', shape: [-1, 2] }
const model = { inputs: [x], outputs: [y] }

const rejection = (variant: { inputs: TensorSpec[]; outputs: TensorSpec[] }) => {
  try {
    checkSameTensors('int8', model, variant)
  } catch (error) {
    if (error instanceof VariantRejectedError) return { field: error.field, message: error.message }
    throw error
  }
  return undefined
}

describe('a variant\'s tensors', () => {
  it('pass when names, datatypes and shapes are the same', () => {
    expect(rejection({ inputs: [{ ...x }], outputs: [{ ...y }] })).toBeUndefined()
  })

  it.each<[string, { inputs: TensorSpec[]; outputs: TensorSpec[] }, string, RegExp]>([
    ['another input count', { inputs: [x, x], outputs: [y] }, 'int8.inputs', /has 2 inputs but the model has 1 \(x\)/],
    ['another input name', { inputs: [{ ...x, name: 'image' }], outputs: [y] }, 'int8.inputs[0].name', /named image but the model's is x/],
    ['another datatype', { inputs: [{ ...x, datatype: 'UINT8' }], outputs: [y] }, 'int8.inputs[0].datatype', /input x is UINT8 but the model's is FP32/],
    ['a fixed dimension where the model has a dynamic one', { inputs: [{ ...x, shape: [1, 3, -1, -1] }], outputs: [y] }, 'int8.inputs[0].shape', /shape \[1,3,-1,-1\] but the model's has \[-1,3,-1,-1\]/],
    ['another rank', { inputs: [x], outputs: [{ ...y, shape: [-1] }] }, 'int8.outputs[0].shape', /output y has shape \[-1\]/],
  ])('are refused with %s, naming the field', (_case, variant, field, message) => {
    const refused = rejection(variant)
    expect(refused?.field).toBe(field)
    expect(refused?.message).toMatch(message)
  })
})

describe('the outputs a variant\'s report was judged on (int8_class_output)', () => {
  const outputs: TensorSpec[] = [
    { name: 'logits', datatype: 'FP32', shape: [-1, 1000] },
    { name: 'label', datatype: 'INT64', shape: [-1] },
    { name: 'score', datatype: 'FP32', shape: [-1, 1] },
    { name: 'features', datatype: 'FP16', shape: [-1, -1] },
  ]
  const judged = (names: string[]) => {
    try {
      checkClassOutputs('int8', { outputs }, names)
    } catch (error) {
      if (error instanceof VariantRejectedError) return { field: error.field, message: error.message }
      throw error
    }
    return undefined
  }

  it('pass for outputs with a class axis and for integer labels', () => {
    expect(judged(['logits', 'label'])).toBeUndefined()
  })

  it('refuse a name that is not an output, listing the outputs', () => {
    expect(judged(['probs'])).toEqual({ field: 'int8_class_output', message: 'int8_class_output "probs" is not an output of the model (its outputs: logits, label, score, features)' })
  })

  it('refuse a floating-point output without a fixed class axis of 2 or more, as depinfer-quantize does', () => {
    expect(judged(['score'])).toEqual({ field: 'int8_class_output', message: 'int8_class_output "score" has no class axis to judge top-1 agreement on: it is FP32 [-1,1], not [..., classes ≥ 2]' })
    expect(judged(['logits', 'features'])?.message).toMatch(/^int8_class_output "features" has no class axis .* FP16 \[-1,-1\]/)
  })
})
