/**
 * Writes an Open Inference Protocol inference response. The JSON is assembled by hand around
 * each tensor's data so 64-bit integers keep all their digits (JSON.stringify cannot write
 * bigints) and large float arrays are serialized once. Outputs asked for as binary data (the
 * binary tensor extension) carry `parameters.binary_data_size` in the JSON header and their
 * bytes after it, in the same order as the JSON list.
 */
import { elementsToJson, type ModelVariant } from '@depinfer/shared'
import type { InferResult } from '../gateway/rpc.js'
import type { BinaryOutputs } from './infer-request.js'

export type InferResponseBody =
  | { kind: 'json'; body: string }
  /** `headerLength` bytes of JSON header, then the binary outputs' bytes. */
  | { kind: 'binary'; body: Uint8Array<ArrayBuffer>; headerLength: number }

const utf8 = new TextEncoder()

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
  const outputs = ordered.map((tensor) => {
    if (binary.includes(tensor)) {
      const { name, datatype, shape } = tensor
      return JSON.stringify({ name, datatype, shape, parameters: { binary_data_size: tensor.data.byteLength } })
    }
    const meta = JSON.stringify({ name: tensor.name, datatype: tensor.datatype, shape: tensor.shape })
    return `${meta.slice(0, -1)},"data":${elementsToJson(tensor.datatype, tensor.data)}}`
  })
  const json = `${JSON.stringify(head).slice(0, -1)},"outputs":[${outputs.join(',')}]}`
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
