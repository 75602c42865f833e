/**
 * Parses an Open Inference Protocol inference request (JSON form) into raw tensors.
 * Every rejection names the offending field (`inputs[0].shape`, `inputs[1].data[7]`, ...).
 */
import {
  DATATYPES,
  encodeJsonElements,
  flattenTensorData,
  isDatatype,
  ProtocolError,
  type RawTensor,
} from '@depinfer/shared'
import { z } from 'zod'
import { InvalidRequestError } from '../errors/request.js'

const InferRequestSchema = z.object({
  id: z.string().optional(),
  parameters: z.record(z.string(), z.unknown()).optional(),
  inputs: z
    .array(
      z.object({
        name: z.string().min(1),
        shape: z.array(z.number().int().nonnegative()),
        datatype: z.string(),
        parameters: z.record(z.string(), z.unknown()).optional(),
        data: z.unknown(),
      }),
    )
    .min(1),
  outputs: z
    .array(z.object({ name: z.string().min(1), parameters: z.record(z.string(), z.unknown()).optional() }))
    .optional(),
})

export interface ParsedInferRequest {
  id: string | undefined
  inputs: RawTensor[]
  outputs: string[]
  /** `parameters.timeout_ms`, when the caller set a tighter budget than the default. */
  timeoutMs: number | undefined
}

/** `a.b[0].c` from a zod issue path. */
export function fieldPath(path: readonly PropertyKey[]): string {
  return path.reduce<string>(
    (text, key) => (typeof key === 'number' ? `${text}[${key}]` : text ? `${text}.${String(key)}` : String(key)),
    '',
  )
}

export function parseInferRequest(body: unknown): ParsedInferRequest {
  const parsed = InferRequestSchema.safeParse(body)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!
    const field = fieldPath(issue.path) || 'body'
    throw new InvalidRequestError(`${field}: ${issue.message}`, field)
  }
  const request = parsed.data
  const inputs = request.inputs.map((input, i): RawTensor => {
    const field = `inputs[${i}]`
    if (!isDatatype(input.datatype)) {
      throw new InvalidRequestError(
        `unsupported datatype ${JSON.stringify(input.datatype)}; supported: ${DATATYPES.join(', ')}`,
        `${field}.datatype`,
      )
    }
    if (input.parameters?.binary_data_size !== undefined) {
      throw new InvalidRequestError(
        'binary tensor data needs the Inference-Header-Content-Length header',
        `${field}.parameters.binary_data_size`,
      )
    }
    if (input.data === undefined) throw new InvalidRequestError(`${field}.data is required`, `${field}.data`)
    try {
      const values = flattenTensorData(input.data, input.shape, `${field}.data`)
      return {
        name: input.name,
        datatype: input.datatype,
        shape: input.shape,
        data: encodeJsonElements(input.datatype, values, `${field}.data`),
      }
    } catch (error) {
      if (error instanceof ProtocolError) throw new InvalidRequestError(error.message, error.field)
      throw error
    }
  })
  const timeout = request.parameters?.timeout_ms
  if (timeout !== undefined && !(Number.isSafeInteger(timeout) && (timeout as number) > 0)) {
    throw new InvalidRequestError('parameters.timeout_ms must be a positive integer', 'parameters.timeout_ms')
  }
  return {
    id: request.id,
    inputs,
    outputs: (request.outputs ?? []).map((o) => o.name),
    timeoutMs: timeout as number | undefined,
  }
}
