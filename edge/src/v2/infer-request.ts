/**
 * Parses an Open Inference Protocol inference request into raw tensors: the JSON form, and the
 * binary tensor data extension (JSON header, then each binary input's little-endian bytes in
 * input order, announced by `parameters.binary_data_size`). Every rejection names the offending
 * field (`inputs[0].shape`, `inputs[1].data[7]`, ...).
 */
import {
  byteLength,
  copyBytes,
  DATATYPES,
  encodeJsonRows,
  InexactIntegerError,
  isDatatype,
  jsonPreview,
  MAX_TENSOR_BYTES,
  ProtocolError,
  tensorDataRows,
  type RawTensor,
} from '@depinfer/shared'
import { z } from 'zod'
import { InvalidRequestError, PayloadTooLargeError } from '../errors/request.js'
import { parseKeepingLargeIntegers } from './exact-json.js'

/** How much of a refused parameter's value a message shows (the value can be the whole body). */
const SHOWN_CHARS = 100

/**
 * An optional field, where `null` counts as absent: clients built on schema classes (MLServer's
 * and KServe's pydantic types) send their unset optional fields as `null`.
 */
const optional = <T extends z.ZodType>(schema: T) => schema.nullish().transform((value) => value ?? undefined)
/** Parameters, with a `null` one left out as absent (as an optional field's is, above). */
const Parameters = z.record(z.string(), z.unknown()).transform((parameters) => Object.fromEntries(Object.entries(parameters).filter(([, value]) => value !== null)))

const InferRequestSchema = z.object({
  id: optional(z.string()),
  parameters: optional(Parameters),
  inputs: z
    .array(
      z.object({
        name: z.string().min(1),
        shape: z.array(z.number().int().nonnegative()),
        datatype: z.string(),
        parameters: optional(Parameters),
        data: z.unknown().optional(),
      }),
    )
    .min(1),
  outputs: optional(z.array(z.object({ name: z.string().min(1), parameters: optional(Parameters) }))),
})

export interface ParsedInferRequest {
  id: string | undefined
  inputs: RawTensor[]
  outputs: string[]
  /** Whether to answer an output, by name, as binary data (extension). */
  binaryOutputs: BinaryOutputs
  /** `parameters.timeout_ms`, when the caller set a tighter budget than the default. */
  timeoutMs: number | undefined
  /** `parameters.max_price_wei`: the most the caller will pay for this job, in wei. */
  maxPriceWei: bigint | undefined
}

/** `a.b[0].c` from a zod issue path. */
function fieldPath(path: readonly PropertyKey[]): string {
  return path.reduce<string>(
    (text, key) => (typeof key === 'number' ? `${text}[${key}]` : text ? `${text}.${String(key)}` : String(key)),
    '',
  )
}

export type BinaryOutputs = (outputName: string) => boolean

/**
 * @param body the JSON request (or the JSON header of a binary request), as JSON.parse read it
 * @param binary the bytes after the JSON header, when the request uses the binary extension
 * @param bodyText the JSON text `body` was read from: when a 64-bit integer element is a JSON
 *   number beyond ±2^53 (rounded by JSON.parse), the text is read again keeping its digits
 */
export function parseInferRequest(body: unknown, binary?: Uint8Array, bodyText?: string): ParsedInferRequest {
  let inexact: InexactIntegerError
  try {
    return parseBody(body, binary)
  } catch (error) {
    if (!(error instanceof InexactIntegerError)) throw error
    if (bodyText === undefined) throw new InvalidRequestError(error.message, error.field)
    inexact = error
  }
  let exact: unknown
  try {
    exact = parseKeepingLargeIntegers(bodyText)
  } catch (error) {
    // A reviver makes JSON.parse walk the value recursively: a body nested ~10,000 deep, which
    // the plain reading took, overflows the stack there (a 500). The number then needs a string.
    if (error instanceof RangeError) throw new InvalidRequestError(inexact.message, inexact.field)
    throw error
  }
  try {
    return parseBody(exact, binary)
  } catch (error) {
    // A runtime without source text access, or a literal such as 1e30: only a string will do.
    if (error instanceof InexactIntegerError) throw new InvalidRequestError(error.message, error.field)
    throw error
  }
}

function parseBody(body: unknown, binary: Uint8Array | undefined): ParsedInferRequest {
  const parsed = InferRequestSchema.safeParse(body)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!
    const field = fieldPath(issue.path) || 'body'
    throw new InvalidRequestError(`${field}: ${issue.message}`, field)
  }
  const request = parsed.data
  let binaryOffset = 0
  /**
   * Tensor bytes so far, at most MAX_TENSOR_BYTES (one job's message must fit the broker's
   * limit). JSON can exceed it within the body limit: a number can be 2 characters and 8 bytes.
   */
  let inputBytes = 0
  const countBytes = (bytes: number, field: string) => {
    inputBytes += bytes
    if (inputBytes > MAX_TENSOR_BYTES) throw new PayloadTooLargeError(MAX_TENSOR_BYTES, `the inputs' tensor data (${inputBytes} bytes up to ${field})`, field)
  }
  const inputNames = new Set<string>()
  const inputs = request.inputs.map((input, i): RawTensor => {
    const field = `inputs[${i}]`
    // Checked here, not only against the model in the Gateway: the input commitment is hashed
    // over the inputs by name before the job reaches it.
    if (inputNames.has(input.name)) throw new InvalidRequestError(`input ${JSON.stringify(input.name)} is given twice`, `${field}.name`)
    inputNames.add(input.name)
    if (!isDatatype(input.datatype)) {
      throw new InvalidRequestError(
        `unsupported datatype ${JSON.stringify(input.datatype)}; supported: ${DATATYPES.join(', ')}`,
        `${field}.datatype`,
      )
    }
    refuseSharedMemory(input.parameters, `${field}.parameters`)
    const binarySize = input.parameters?.binary_data_size
    if (binarySize !== undefined) {
      const sizeField = `${field}.parameters.binary_data_size`
      if (!binary) throw new InvalidRequestError('binary tensor data needs the Inference-Header-Content-Length header', sizeField)
      if (typeof binarySize !== 'number' || !Number.isSafeInteger(binarySize) || binarySize < 0) {
        throw new InvalidRequestError(`binary_data_size must be a number of bytes (a non-negative integer), got ${jsonPreview(binarySize, SHOWN_CHARS)}`, sizeField)
      }
      const expected = byteLength(input.datatype, input.shape)
      if (binarySize !== expected) {
        throw new InvalidRequestError(
          `binary_data_size is ${JSON.stringify(binarySize)} but ${input.datatype} [${input.shape.join(',')}] is ${expected} bytes`,
          sizeField,
        )
      }
      if (input.data !== undefined) throw new InvalidRequestError('give either data or binary_data_size, not both', `${field}.data`)
      if (binaryOffset + expected > binary.byteLength) {
        throw new InvalidRequestError(`binary data ends before this input's ${expected} bytes`, sizeField)
      }
      countBytes(expected, sizeField)
      // Copied out of the body: a view would carry the whole body across the RPC boundary.
      const data = copyBytes(binary.subarray(binaryOffset, binaryOffset + expected))
      // The extension stores a BOOL as one byte, 0 or 1; anything else is no boolean at all.
      const notBool = input.datatype === 'BOOL' ? data.findIndex((byte) => byte > 1) : -1
      if (notBool !== -1) {
        throw new InvalidRequestError(`BOOL element ${notBool} is byte ${data[notBool]}; binary BOOLs are the bytes 0 and 1`, sizeField)
      }
      binaryOffset += expected
      return { name: input.name, datatype: input.datatype, shape: input.shape, data }
    }
    if (input.data === undefined) throw new InvalidRequestError(`${field}.data is required`, `${field}.data`)
    try {
      const rows = tensorDataRows(input.data, input.shape, `${field}.data`)
      countBytes(byteLength(input.datatype, input.shape), `${field}.data`)
      return {
        name: input.name,
        datatype: input.datatype,
        shape: input.shape,
        // Nested data: a refused element is named by its nested path, as a shape error is.
        data: encodeJsonRows(input.datatype, rows, `${field}.data`, Array.isArray(input.data) && Array.isArray(input.data[0]) ? input.shape : undefined),
      }
    } catch (error) {
      // Left to the caller, which can read the body again keeping the number's digits.
      if (error instanceof InexactIntegerError) throw error
      if (error instanceof ProtocolError) throw new InvalidRequestError(error.message, error.field)
      throw error
    }
  })
  if (binary && binaryOffset !== binary.byteLength) {
    throw new InvalidRequestError(
      `${binary.byteLength - binaryOffset} bytes of binary data follow the header that no input's binary_data_size accounts for`,
      'Inference-Header-Content-Length',
    )
  }
  const timeout = request.parameters?.timeout_ms
  if (timeout !== undefined && !(Number.isSafeInteger(timeout) && (timeout as number) > 0)) {
    throw new InvalidRequestError('parameters.timeout_ms must be a positive integer', 'parameters.timeout_ms')
  }
  const maxPriceWei = weiParameter(request.parameters?.max_price_wei, 'parameters.max_price_wei')
  // A flag of the wrong type ("true") would otherwise be read as absent: the client would get
  // JSON where it asked for binary, without a word.
  requireBoolean(request.parameters?.binary_data_output, 'parameters.binary_data_output')
  const outputs = request.outputs ?? []
  const outputNames = new Set<string>()
  outputs.forEach((output, j) => {
    // Refused like a repeated input: the two entries could even disagree on binary_data.
    if (outputNames.has(output.name)) throw new InvalidRequestError(`output ${JSON.stringify(output.name)} is asked for twice`, `outputs[${j}].name`)
    outputNames.add(output.name)
    requireBoolean(output.parameters?.binary_data, `outputs[${j}].parameters.binary_data`)
    refuseSharedMemory(output.parameters, `outputs[${j}].parameters`)
    // The classification extension (top-k labels instead of the tensor) is not offered (GET /v2
    // does not list it); answering with the raw tensor would hand its client the wrong thing.
    if (output.parameters?.classification !== undefined) {
      throw new InvalidRequestError('the classification extension is not supported: ask for the output tensor without parameters.classification', `outputs[${j}].parameters.classification`)
    }
  })
  return {
    id: request.id,
    inputs,
    outputs: outputs.map((o) => o.name),
    binaryOutputs: binaryOutputs(request.parameters?.binary_data_output === true, outputs),
    timeoutMs: timeout as number | undefined,
    maxPriceWei,
  }
}

/**
 * An amount of wei: a string of decimal digits (any size, as JSON numbers lose precision past
 * 2^53 and wei amounts often exceed it), or a non-negative integer number up to 2^53.
 */
function weiParameter(value: unknown, field: string): bigint | undefined {
  if (value === undefined) return undefined
  if (typeof value === 'string' && /^\d{1,78}$/.test(value)) return BigInt(value)
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return BigInt(value)
  throw new InvalidRequestError(`${field} must be an amount of wei: a string of decimal digits or a non-negative integer, got ${jsonPreview(value, SHOWN_CHARS)}`, field)
}

/**
 * The shared-memory extensions (Triton's system and CUDA shared memory) are not offered (GET /v2
 * does not list them): a tensor sent or asked for through a region would otherwise be missing,
 * or land in the JSON body while its client reads the region.
 */
function refuseSharedMemory(parameters: Record<string, unknown> | undefined, field: string): void {
  const key = parameters && Object.keys(parameters).find((name) => name.startsWith('shared_memory_'))
  if (key !== undefined) {
    throw new InvalidRequestError(`the shared-memory extension is not supported: send the tensor as data or binary data, without parameters.${key}`, `${field}.${key}`)
  }
}

function requireBoolean(value: unknown, field: string): void {
  if (value !== undefined && typeof value !== 'boolean') {
    throw new InvalidRequestError(`${field} must be true or false, got ${jsonPreview(value, SHOWN_CHARS)}`, field)
  }
}

/**
 * Which outputs go back as binary: each output's own `binary_data` where it says, else the
 * request's `binary_data_output` (the extension lets the per-output setting override it).
 */
function binaryOutputs(
  byDefault: boolean,
  outputs: readonly { name: string; parameters?: { binary_data?: unknown } | undefined }[],
): BinaryOutputs {
  const overrides = new Map<string, boolean>()
  for (const o of outputs) if (typeof o.parameters?.binary_data === 'boolean') overrides.set(o.name, o.parameters.binary_data)
  return (name) => overrides.get(name) ?? byDefault
}
