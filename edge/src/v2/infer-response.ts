/**
 * Writes an Open Inference Protocol inference response. The JSON is assembled by hand around
 * each tensor's data so 64-bit integers keep all their digits (JSON.stringify cannot write
 * bigints) and large float arrays are serialized once.
 */
import { elementsToJson } from '@depinfer/shared'
import type { InferResult } from '../gateway/rpc.js'

export function inferResponseJson(result: InferResult, requestId: string | undefined): string {
  const head = {
    model_name: result.modelName,
    model_version: result.modelVersion,
    ...(requestId !== undefined && { id: requestId }),
    parameters: {
      job_id: result.jobId,
      device_id: result.deviceId,
      attempts: result.attempts,
      queue_ms: result.timings.queueMs,
      infer_ms: result.timings.inferMs,
      device_ms: result.timings.totalMs,
      gateway_ms: result.timings.gatewayMs,
    },
  }
  const outputs = result.outputs.map((tensor) => {
    const meta = JSON.stringify({ name: tensor.name, datatype: tensor.datatype, shape: tensor.shape })
    return `${meta.slice(0, -1)},"data":${elementsToJson(tensor.datatype, tensor.data)}}`
  })
  return `${JSON.stringify(head).slice(0, -1)},"outputs":[${outputs.join(',')}]}`
}
