/**
 * Checks tensors against a model's declared inputs and a list of requested outputs. Used by the
 * edge (to answer the caller with a precise 400 before anything is sent) and by the agent (which
 * never trusts the edge blindly): one definition, so both reject exactly the same things.
 */
import { TensorError } from './errors.js'
import type { TensorSpec } from './messages.js'
import type { RawTensor } from './tensor.js'

export function checkInputs(
  modelName: string,
  specs: readonly TensorSpec[],
  inputs: readonly Pick<RawTensor, 'name' | 'datatype' | 'shape'>[],
): void {
  checkTensors('input', modelName, specs, inputs)
}

/**
 * Checks a device's outputs against the model's: exactly the requested ones (all when none
 * were), each once, with the declared datatype. A device that answers anything else is broken
 * or dishonest, whatever it signed. Not their shapes: onnxruntime does not hold a model to the
 * output shapes it declares (it warns), so an honest answer can differ from them.
 */
export function checkOutputs(
  modelName: string,
  specs: readonly TensorSpec[],
  requested: readonly string[],
  outputs: readonly Pick<RawTensor, 'name' | 'datatype' | 'shape'>[],
): void {
  checkTensors('output', modelName, requested.length === 0 ? specs : specs.filter((s) => requested.includes(s.name)), outputs)
}

function checkTensors(
  kind: 'input' | 'output',
  modelName: string,
  specs: readonly TensorSpec[],
  tensors: readonly Pick<RawTensor, 'name' | 'datatype' | 'shape'>[],
): void {
  const checkShapes = kind === 'input'
  const seen = new Set<string>()
  tensors.forEach((tensor, i) => {
    const field = `${kind}s[${i}]`
    const spec = specs.find((s) => s.name === tensor.name)
    if (!spec) {
      throw new TensorError(
        `model ${modelName} has no ${kind} ${JSON.stringify(tensor.name)}${kind === 'output' ? ' asked for' : ''}; ${kind === 'output' ? 'the outputs asked for' : 'its inputs'} are ${specs.map((s) => s.name).join(', ')}`,
        `${field}.name`,
      )
    }
    if (seen.has(tensor.name)) throw new TensorError(`${kind} ${JSON.stringify(tensor.name)} is given twice`, `${field}.name`)
    seen.add(tensor.name)
    if (tensor.datatype !== spec.datatype) {
      throw new TensorError(`${kind} ${spec.name} must be ${spec.datatype}, got ${tensor.datatype}`, `${field}.datatype`)
    }
    const fits =
      !checkShapes ||
      (tensor.shape.length === spec.shape.length && spec.shape.every((dim, d) => dim === -1 || dim === tensor.shape[d]))
    if (!fits) {
      throw new TensorError(
        `${kind} ${spec.name} has shape [${tensor.shape.join(',')}] but model ${modelName} expects [${spec.shape.join(',')}] (-1 = any)`,
        `${field}.shape`,
      )
    }
    // An empty tensor (size 0 in any dimension): onnxruntime aborts the whole process on one
    // rather than returning an error for some models, which takes the device and every model on
    // it down, and the job then crashes the next device it is retried on. An empty batch did
    // (Silero VAD), and so did size 0 in a later dimension (an audit: InstanceNormalization on
    // [1,3,4,0] SIGSEGV, TopK on [1,3,0,4] SIGFPE, LSTM on [1,0,4], its batch, SIGABRT).
    const empty = checkShapes ? tensor.shape.indexOf(0) : -1
    if (empty !== -1) {
      const what = empty === 0 ? 'an empty batch (size 0 in dimension 0)' : `an empty tensor (size 0 in dimension ${empty})`
      throw new TensorError(`${kind} ${spec.name} has shape [${tensor.shape.join(',')}]: ${what} is refused, as some models crash onnxruntime on one`, `${field}.shape`)
    }
  })
  const missing = specs.filter((s) => !seen.has(s.name)).map((s) => s.name)
  if (missing.length > 0) throw new TensorError(`missing ${kind}(s) ${missing.join(', ')} for model ${modelName}`, `${kind}s`)
}

export function checkOutputNames(modelName: string, specs: readonly TensorSpec[], requested: readonly string[]): void {
  requested.forEach((name, j) => {
    if (!specs.some((s) => s.name === name)) {
      throw new TensorError(
        `model ${modelName} has no output ${JSON.stringify(name)}; its outputs are ${specs.map((s) => s.name).join(', ')}`,
        `outputs[${j}].name`,
      )
    }
  })
}
