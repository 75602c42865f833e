/**
 * Writes an Open Inference Protocol inference response. The JSON is assembled by hand around
 * each tensor's data so 64-bit integers keep all their digits (JSON.stringify cannot write
 * bigints) and large float arrays are serialized once. Outputs asked for as binary data (the
 * binary tensor extension) carry `parameters.binary_data_size` in the JSON header and their
 * bytes after it, in the same order as the JSON list.
 *
 * Large JSON outputs are streamed, a slice of elements at a time: as text a float takes up to
 * ~20 bytes, so a 27 MB output (allowed: under MAX_TENSOR_BYTES) became one 161 MB string, and
 * three such answers at once took the local workerd from 0.5 to 1.4 GB (an audit). A Worker has
 * 128 MB.
 */
import { BYTES_PER_ELEMENT, elementsToJson, type ModelVariant, type RawTensor } from '@depinfer/shared'
import type { InferResult } from '../gateway/rpc.js'
import type { BinaryOutputs } from './infer-request.js'

export type InferResponseBody =
  | { kind: 'json'; body: string | ReadableStream<Uint8Array> }
  /** `headerLength` bytes of JSON header, then the binary outputs' bytes. */
  | { kind: 'binary'; body: Uint8Array<ArrayBuffer> | ReadableStream<Uint8Array>; headerLength: number }

const utf8 = new TextEncoder()

/** JSON outputs with more elements than this in all are streamed (about 6 MB of text and up). */
export const STREAM_ABOVE_ELEMENTS = 1 << 20
/** Elements written per streamed piece: ~64K floats, at most ~1.3 MB of text. */
export const STREAM_SLICE_ELEMENTS = 1 << 16

function attestationParameters(a: InferResult['attestation']) {
  return {
    attestation_seq: a.seq,
    input_salt: a.salt,
    attestation_model_hash: a.modelHash,
    attestation_input_hash: a.inputHash,
    attestation_output_hash: a.outputHash,
    attestation_device: a.device,
    attestation_price_wei: a.price,
    attestation_completed_at: String(a.completedAt),
    attestation_signature: a.signature,
  }
}

export function inferResponse(
  result: InferResult,
  /** Which file of the version ran: its own (`fp32`) or a variant published with it (`int8`). */
  modelVariant: ModelVariant,
  requestId: string | undefined,
  /** The outputs the request listed, in its order; empty when it asked for all of them. */
  requestedOutputs: readonly string[],
  binaryOutputs: BinaryOutputs,
  streaming = { aboveElements: STREAM_ABOVE_ELEMENTS, sliceElements: STREAM_SLICE_ELEMENTS },
): InferResponseBody {
  const head = {
    model_name: result.modelName,
    model_version: result.modelVersion,
    ...(requestId !== undefined && { id: requestId }),
    parameters: {
      job_id: result.jobId,
      device_id: result.deviceId,
      // The file that ran, as attested: attestation_model_hash is its sha256.
      model_variant: modelVariant,
      attempts: result.attempts,
      queue_ms: result.timings.queueMs,
      infer_ms: result.timings.inferMs,
      device_ms: result.timings.totalMs,
      batch_jobs: result.timings.batchJobs,
      gateway_ms: result.timings.gatewayMs,
      // The device's signed attestation, flattened: v2 parameter values are scalars. With
      // input_salt the caller can open its own input commitment (sha256(salt ‖ canonical inputs)).
      ...attestationParameters(result.attestation),
    },
  }
  // In the order the request listed them (clients that read outputs by position expect it;
  // Triton does the same); the device's order, the model's, when it listed none.
  const rank = (name: string) => {
    const index = requestedOutputs.indexOf(name)
    return index === -1 ? requestedOutputs.length : index
  }
  const ordered = requestedOutputs.length === 0 ? result.outputs : [...result.outputs].sort((a, b) => rank(a.name) - rank(b.name))
  const binary = ordered.filter((t) => binaryOutputs(t.name))
  const inJson = ordered.filter((t) => !binary.includes(t))
  const opening = `${JSON.stringify(head).slice(0, -1)},"outputs":[`
  const jsonElements = inJson.reduce((sum, t) => sum + t.data.byteLength / BYTES_PER_ELEMENT[t.datatype], 0)
  if (jsonElements > streaming.aboveElements) {
    const pieces = () => jsonPieces(opening, ordered, (tensor) => binary.includes(tensor), streaming.sliceElements)
    if (binary.length === 0) return { kind: 'json', body: streamedText(pieces()) }
    // The header's length goes first, in Inference-Header-Content-Length: the pieces are made
    // twice, once to count their bytes, rather than held.
    let headerLength = 0
    for (const piece of pieces()) headerLength += utf8.encode(piece).byteLength
    return { kind: 'binary', body: streamedText(pieces(), binary.map((t) => t.data)), headerLength }
  }
  const outputs = ordered.map((tensor) =>
    binary.includes(tensor) ? binaryOutputJson(tensor) : `${outputJsonOpening(tensor)}${elementsToJson(tensor.datatype, tensor.data)}}`,
  )
  const json = `${opening}${outputs.join(',')}]}`
  if (binary.length === 0) return { kind: 'json', body: json }
  const header = utf8.encode(json)
  const body = new Uint8Array(header.byteLength + binary.reduce((sum, t) => sum + t.data.byteLength, 0))
  body.set(header, 0)
  let offset = header.byteLength
  for (const tensor of binary) {
    body.set(tensor.data, offset)
    offset += tensor.data.byteLength
  }
  return { kind: 'binary', body, headerLength: header.byteLength }
}

function binaryOutputJson({ name, datatype, shape, data }: RawTensor): string {
  return JSON.stringify({ name, datatype, shape, parameters: { binary_data_size: data.byteLength } })
}

/** `{"name":…,"datatype":…,"shape":[…],"data":` (the data and the closing brace follow). */
function outputJsonOpening({ name, datatype, shape }: RawTensor): string {
  return `${JSON.stringify({ name, datatype, shape }).slice(0, -1)},"data":`
}

/**
 * The response's JSON text in pieces, each JSON output's data `sliceElements` elements at a time
 * (an output `isBinary` says goes after the JSON is described by its size alone).
 */
function* jsonPieces(opening: string, outputs: readonly RawTensor[], isBinary: (tensor: RawTensor) => boolean, sliceElements: number): Generator<string> {
  yield opening
  for (const [i, tensor] of outputs.entries()) {
    if (isBinary(tensor)) {
      yield `${i ? ',' : ''}${binaryOutputJson(tensor)}`
      continue
    }
    yield `${i ? ',' : ''}${outputJsonOpening(tensor)}[`
    const sliceBytes = sliceElements * BYTES_PER_ELEMENT[tensor.datatype]
    for (let start = 0; start < tensor.data.byteLength; start += sliceBytes) {
      // elementsToJson writes one JSON array: its elements, without the brackets, are this slice's.
      const slice = elementsToJson(tensor.datatype, tensor.data.subarray(start, start + sliceBytes))
      yield `${start ? ',' : ''}${slice.slice(1, -1)}`
    }
    yield ']}'
  }
  yield ']}'
}

/** A byte stream of `pieces`, each made only when the reader wants more, then of `after`'s bytes. */
function streamedText(pieces: Iterator<string>, after: readonly Uint8Array[] = []): ReadableStream<Uint8Array> {
  let next = 0
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      const piece = pieces.next()
      if (!piece.done) controller.enqueue(utf8.encode(piece.value))
      else if (next < after.length) controller.enqueue(after[next++]!.slice())
      else controller.close()
    },
  })
}
