/**
 * Checks a job's tensors against the model before anything is sent to a device, so the caller
 * gets a precise 400 naming the field instead of a device error.
 */
import { checkInputs, checkOutputNames, TensorError, type ModelDescriptor, type RawTensor } from '@depinfer/shared'
import { InvalidRequestError } from '../errors/request.js'

export function validateInputs(
  model: Pick<ModelDescriptor, 'name' | 'inputs' | 'outputs'>,
  inputs: readonly RawTensor[],
  requestedOutputs: readonly string[],
): void {
  try {
    checkInputs(model.name, model.inputs, inputs)
    checkOutputNames(model.name, model.outputs, requestedOutputs)
  } catch (error) {
    if (error instanceof TensorError) throw new InvalidRequestError(error.message, error.field)
    throw error
  }
}
