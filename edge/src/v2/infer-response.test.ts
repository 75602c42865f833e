import { bytesOf, type RawTensor } from '@depinfer/shared'
import { describe, expect, it } from 'vitest'
import type { InferResult } from '../gateway/rpc.js'
import { inferResponse } from './infer-response.js'

const result = (outputs: RawTensor[]): InferResult => ({
  jobId: 'job-1',
  deviceId: 'device-1',
  modelName: 'm',
  modelVersion: '1',
  outputs,
  attempts: 1,
  timings: { queueMs: 1, inferMs: 2, totalMs: 3, batchJobs: 1, gatewayMs: 4 },
  attestation: {
    jobId: '0x01',
    modelHash: '0x02',
    inputHash: '0x03',
    outputHash: '0x04',
    device: '0x05',
    price: '0',
    completedAt: 5,
    signature: '0x06',
    seq: 7,
    salt: '0x08',
  } as InferResult['attestation'],
})

/** Outputs of several datatypes, with the values the JSON form treats specially (-0, NaN, 64-bit integers). */
const outputs: RawTensor[] = [
  { name: 'scores', datatype: 'FP32', shape: [2, 5], data: bytesOf(new Float32Array([0.5, -0, Number.NaN, 1e-7, -3.25, 7, 8, 9, 10, 11])) },
  { name: 'ids', datatype: 'INT64', shape: [3], data: bytesOf(new BigInt64Array([9007199254740993n, -1n, 0n])) },
  { name: 'mask', datatype: 'BOOL', shape: [7], data: new Uint8Array([1, 0, 1, 1, 0, 0, 1]) },
  { name: 'half', datatype: 'FP16', shape: [3], data: bytesOf(new Uint16Array([0x3c00, 0x8000, 0xc000])) },
  { name: 'empty', datatype: 'FP32', shape: [0, 4], data: new Uint8Array(0) },
]

async function text(body: string | Uint8Array<ArrayBuffer> | ReadableStream<Uint8Array>): Promise<string> {
  return typeof body === 'string' ? body : new Response(body).text()
}

describe('inferResponse', () => {
  it('streams large JSON outputs in slices, as the same text as in one piece', async () => {
    const whole = inferResponse(result(outputs), 'fp32', 'req-1', [], () => false)
    expect(whole.kind).toBe('json')
    expect(typeof whole.body).toBe('string')
    for (const sliceElements of [1, 2, 3, 64]) {
      const streamed = inferResponse(result(outputs), 'fp32', 'req-1', [], () => false, { aboveElements: 4, sliceElements })
      expect(streamed.body).toBeInstanceOf(ReadableStream)
      expect(await text(streamed.body)).toBe(whole.body)
    }
    // The text is the data: -0 keeps its sign, NaN is null, 64-bit integers keep every digit.
    const parsed = JSON.parse(whole.body as string) as { outputs: { name: string; data: unknown[] }[] }
    expect(parsed.outputs.map((o) => o.name)).toEqual(['scores', 'ids', 'mask', 'half', 'empty'])
    expect(whole.body).toContain('"data":[0.5,-0.0,null,')
    expect(whole.body).toContain('"data":[9007199254740993,-1,0]')
    expect(parsed.outputs[2]!.data).toEqual([true, false, true, true, false, false, true])
    expect(parsed.outputs[3]!.data).toEqual([1, -0, -2])
  })

  it('streams a binary response with large JSON outputs too, as the same bytes, with the header length counted', async () => {
    const isBinary = (name: string) => name === 'scores' || name === 'half'
    const whole = inferResponse(result(outputs), 'fp32', undefined, [], isBinary)
    expect(whole.kind).toBe('binary')
    expect(whole.body).toBeInstanceOf(Uint8Array)
    for (const sliceElements of [1, 3]) {
      const streamed = inferResponse(result(outputs), 'fp32', undefined, [], isBinary, { aboveElements: 4, sliceElements })
      expect(streamed.kind).toBe('binary')
      expect(streamed.body).toBeInstanceOf(ReadableStream)
      const bytes = new Uint8Array(await new Response(streamed.body as ReadableStream<Uint8Array>).arrayBuffer())
      expect(Buffer.from(bytes).equals(Buffer.from(whole.body as Uint8Array))).toBe(true)
      expect((streamed as { headerLength: number }).headerLength).toBe((whole as { headerLength: number }).headerLength)
    }
  })

  it('does not stream a small response', () => {
    const small = inferResponse(result(outputs.slice(1, 2)), 'fp32', undefined, [], () => false, { aboveElements: 4, sliceElements: 2 })
    expect(typeof small.body).toBe('string')
  })
})
