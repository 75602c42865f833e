import { describe, expect, it } from 'vitest'
import { expectProtocolError } from './testing/expect-protocol-error.js'
import type { Datatype } from './datatypes.js'
import { TensorError } from './errors.js'
import type { TensorSpec } from './messages.js'
import { checkInputs, checkOutputNames, checkOutputs } from './validate.js'


const inputSpecs: TensorSpec[] = [
  { name: 'image', datatype: 'FP32', shape: [-1, 3, 224, 224] },
  { name: 'mask', datatype: 'BOOL', shape: [2] },
]
const outputSpecs: TensorSpec[] = [
  { name: 'logits', datatype: 'FP32', shape: [-1, 1000] },
  { name: 'probs', datatype: 'FP32', shape: [-1, 1000] },
]

type Input = { name: string; datatype: Datatype; shape: number[] }
const image = (shape: number[] = [1, 3, 224, 224], datatype: Datatype = 'FP32'): Input => ({ name: 'image', datatype, shape })
const mask = (shape: number[] = [2], datatype: Datatype = 'BOOL'): Input => ({ name: 'mask', datatype, shape })

describe('checkInputs', () => {
  it('accepts inputs that match the specs, in any order', () => {
    expect(() => checkInputs('resnet', inputSpecs, [image(), mask()])).not.toThrow()
    expect(() => checkInputs('resnet', inputSpecs, [mask(), image()])).not.toThrow()
  })

  it.each([[1], [7], [1024]])('accepts any size (%i) in a -1 dimension', (batch) => {
    expect(() => checkInputs('resnet', inputSpecs, [image([batch, 3, 224, 224]), mask()])).not.toThrow()
  })

  it('refuses an empty batch (size 0 in a dynamic dimension 0): onnxruntime can abort the process on one', () => {
    const error = expectProtocolError(TensorError, () => checkInputs('resnet', inputSpecs, [mask(), image([0, 3, 224, 224])]), 'inputs[1].shape')
    expect(error.message).toMatch(/image has shape \[0,3,224,224\]: an empty batch/)
  })

  it('refuses size 0 in a dynamic dimension after the first too: onnxruntime crashed on those (InstanceNormalization, TopK, LSTM)', () => {
    const specs: TensorSpec[] = [{ name: 'x', datatype: 'FP32', shape: [-1, 3, -1, -1] }]
    const error = expectProtocolError(TensorError, () => checkInputs('norm', specs, [{ name: 'x', datatype: 'FP32', shape: [1, 3, 4, 0] }]), 'inputs[0].shape')
    expect(error.message).toMatch(/x has shape \[1,3,4,0\]: an empty tensor \(size 0 in dimension 3\) is refused/)
  })

  it('accepts a model with no inputs and no tensors', () => {
    expect(() => checkInputs('const', [], [])).not.toThrow()
  })

  it('accepts a scalar input for a scalar spec', () => {
    expect(() => checkInputs('m', [{ name: 's', datatype: 'INT64', shape: [] }], [{ name: 's', datatype: 'INT64', shape: [] }])).not.toThrow()
  })

  it.each([
    ['an unknown input', [image(), { name: 'extra', datatype: 'FP32', shape: [1] } as Input, mask()], 'inputs[1].name'],
    ['an unknown first input', [{ name: 'Image', datatype: 'FP32', shape: [1, 3, 224, 224] } as Input, mask()], 'inputs[0].name'],
    ['a duplicate input', [image(), mask(), image()], 'inputs[2].name'],
    ['a duplicate input even when the second copy is otherwise invalid', [mask(), mask([3], 'INT8')], 'inputs[1].name'],
    ['a wrong datatype', [image(undefined, 'FP16'), mask()], 'inputs[0].datatype'],
    ['a wrong datatype on the second input', [image(), mask(undefined, 'UINT8')], 'inputs[1].datatype'],
    ['a rank too low', [image([3, 224, 224]), mask()], 'inputs[0].shape'],
    ['a rank too high', [image([1, 1, 3, 224, 224]), mask()], 'inputs[0].shape'],
    ['a scalar for a rank-1 spec', [image(), mask([])], 'inputs[1].shape'],
    ['an extra trailing dimension', [image([1, 3, 224, 224, 1]), mask()], 'inputs[0].shape'],
    ['an extra trailing dimension on a rank-1 spec', [image(), mask([2, 1])], 'inputs[1].shape'],
    ['a fixed dimension mismatch', [image([1, 3, 224, 225]), mask()], 'inputs[0].shape'],
    ['a fixed dimension mismatch in the middle', [image([1, 1, 224, 224]), mask()], 'inputs[0].shape'],
    ['a fixed dimension mismatch on a rank-1 spec', [image(), mask([3])], 'inputs[1].shape'],
    ['a missing input', [image()], 'inputs'],
    ['no inputs at all', [], 'inputs'],
  ])('rejects %s, naming the field', (_case, inputs, field) => {
    expectProtocolError(TensorError, () => checkInputs('resnet', inputSpecs, inputs), field)
  })

  it('rejects a missing trailing dimension even when the spec leaves it dynamic (-1)', () => {
    const specs: TensorSpec[] = [{ name: 'tokens', datatype: 'INT64', shape: [4, -1] }]
    expect(() => checkInputs('bert', specs, [{ name: 'tokens', datatype: 'INT64', shape: [4, 9] }])).not.toThrow()
    expectProtocolError(TensorError, () => checkInputs('bert', specs, [{ name: 'tokens', datatype: 'INT64', shape: [4] }]), 'inputs[0].shape')
  })

  it('names the model and the available inputs for an unknown input', () => {
    const error = expectProtocolError(TensorError, () => checkInputs('resnet', inputSpecs, [{ name: 'nope', datatype: 'FP32', shape: [1] }]), 'inputs[0].name')
    expect(error.message).toContain('resnet')
    expect(error.message).toContain('nope')
    expect(error.message).toContain('image')
    expect(error.message).toContain('mask')
  })

  it('names every missing input', () => {
    const specs: TensorSpec[] = [...inputSpecs, { name: 'scale', datatype: 'FP64', shape: [] }]
    const error = expectProtocolError(TensorError, () => checkInputs('resnet', specs, [mask()]), 'inputs')
    expect(error.message).toContain('image')
    expect(error.message).toContain('scale')
    expect(error.message).not.toContain('mask')
  })

  it('names the expected and given datatypes', () => {
    const error = expectProtocolError(TensorError, () => checkInputs('resnet', inputSpecs, [image(undefined, 'FP64'), mask()]), 'inputs[0].datatype')
    expect(error.message).toContain('FP32')
    expect(error.message).toContain('FP64')
  })

  it('does not treat -1 in the tensor shape as a wildcard for a fixed spec dimension', () => {
    expectProtocolError(TensorError, () => checkInputs('resnet', inputSpecs, [image([1, -1, 224, 224]), mask()]), 'inputs[0].shape')
  })
})

describe('checkOutputNames', () => {
  it('accepts no requested outputs and any subset of the declared ones', () => {
    expect(() => checkOutputNames('resnet', outputSpecs, [])).not.toThrow()
    expect(() => checkOutputNames('resnet', outputSpecs, ['probs'])).not.toThrow()
    expect(() => checkOutputNames('resnet', outputSpecs, ['probs', 'logits'])).not.toThrow()
  })

  it.each([
    [['nope'], 'outputs[0].name'],
    [['logits', 'Probs'], 'outputs[1].name'],
    [['logits', 'probs', ''], 'outputs[2].name'],
    [['x', 'y'], 'outputs[0].name'],
  ])('rejects unknown outputs in %j on field %s', (requested, field) => {
    const error = expectProtocolError(TensorError, () => checkOutputNames('resnet', outputSpecs, requested), field)
    expect(error.message).toContain('resnet')
    expect(error.message).toContain('logits')
  })

  it('does not confuse input names with output names', () => {
    expectProtocolError(TensorError, () => checkOutputNames('resnet', outputSpecs, ['image']), 'outputs[0].name')
  })
})

describe('checkOutputs (a device\'s answer)', () => {
  const out = (name: string, shape: number[] = [2, 1000], datatype: Datatype = 'FP32') => ({ name, datatype, shape })

  it('accepts every declared output when none were asked for, or exactly those asked for, in any order', () => {
    expect(() => checkOutputs('resnet', outputSpecs, [], [out('probs'), out('logits')])).not.toThrow()
    expect(() => checkOutputs('resnet', outputSpecs, ['probs'], [out('probs')])).not.toThrow()
  })

  it.each([
    ['an output the model does not have', [], [out('logits'), out('probs'), out('pwned', [3], 'INT64')], 'outputs[2].name'],
    ['an output not asked for', ['probs'], [out('probs'), out('logits')], 'outputs[1].name'],
    ['an output twice', [], [out('logits'), out('logits'), out('probs')], 'outputs[1].name'],
    ['a missing output', [], [out('logits')], 'outputs'],
    ['nothing at all', ['probs'], [], 'outputs'],
    ['another datatype', [], [out('logits'), out('probs', [2, 1000], 'FP64')], 'outputs[1].datatype'],
  ] as const)('refuses %s', (_case, requested, outputs, field) => {
    expectProtocolError(TensorError, () => checkOutputs('resnet', outputSpecs, requested, outputs), field)
  })

  it('takes shapes other than the declared ones: onnxruntime does not hold a model to them', () => {
    expect(() => checkOutputs('resnet', outputSpecs, [], [out('logits', [1, 7, 3]), out('probs', [1, 999])])).not.toThrow()
  })
})
