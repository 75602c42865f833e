/**
 * One inference end to end, for real: HTTP → Hono in workerd (Miniflare) → Gateway Durable
 * Object → MQTT broker (aedes and Mosquitto) → device agent process → onnxruntime-node, and back.
 * Outputs are compared with onnxruntime-node run directly on the same input in this process.
 */
import * as ort from 'onnxruntime-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bundledModelPath } from '../../device-agent/src/models/bundled.js'
import { sha256Hex } from '../../shared/src/index.js'
import { readFileSync } from 'node:fs'
import type { LocalBroker } from '../../scripts/local/broker.js'
import { EXAMPLE_SHAPE, exampleInferRequest, exampleTextLine } from '../../scripts/local/example-input.js'
import { startLocalNetwork, type LocalNetwork } from '../../scripts/local/network.js'
import { apiClient, BROKERS, outputByName, postBinaryInfer, runDirect, waitForModelReady, type ApiClient } from './support.js'

const MAX_BODY_BYTES = 4 * 1024 * 1024

describe.each(BROKERS)('inference through $name', (brokerKind) => {
  let broker: LocalBroker
  let network: LocalNetwork
  let api: ApiClient

  beforeAll(async () => {
    broker = await brokerKind.start()
    network = await startLocalNetwork({
      broker,
      build: false,
      agents: [{ deviceId: 'device-a', models: 'ppocr-cls,ppocr-det' }],
      edgeVars: { MAX_BODY_BYTES: String(MAX_BODY_BYTES) },
    })
    api = apiClient(network.edge.url, network.apiKey)
    await waitForModelReady(api, 'ppocr-cls')
    await waitForModelReady(api, 'ppocr-det')
  })
  afterAll(async () => {
    await network?.close()
    await broker?.close()
  })

  it('answers health without a key: live, and ready once a device is online', async () => {
    const live = await fetch(`${network.edge.url}/v2/health/live`)
    expect(live.status).toBe(200)
    const ready = await fetch(`${network.edge.url}/v2/health/ready`)
    expect(ready.status).toBe(200)
    expect(await ready.json()).toMatchObject({ ready: true, broker_connected: true, devices_online: 1 })
  })

  it('describes the server and the models, with the model file sha256', async () => {
    expect((await api.get('/v2')).body).toMatchObject({ name: 'depinfer', extensions: expect.any(Array) })
    const meta = await api.get('/v2/models/ppocr-cls')
    expect(meta.status).toBe(200)
    expect(meta.body).toMatchObject({
      name: 'ppocr-cls',
      versions: ['1'],
      platform: 'onnxruntime_onnx',
      inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 3, -1, -1] }],
      outputs: [{ name: 'softmax_0.tmp_0', datatype: 'FP32', shape: [-1, 2] }],
      sha256: sha256Hex(readFileSync(bundledModelPath('ppocr-cls'))),
    })
    const versioned = await api.get('/v2/models/ppocr-cls/versions/1')
    expect(versioned.body.name).toBe('ppocr-cls')
    expect((await api.get('/v2/models/ppocr-cls/versions/1/ready')).body).toMatchObject({ ready: true })
  })

  it('lists what the network can serve in the repository index', async () => {
    const index = await api.post('/v2/repository/index', {})
    expect(index.status).toBe(200)
    expect(index.body).toEqual(
      expect.arrayContaining([
        { name: 'ppocr-cls', version: '1', state: 'READY', reason: '' },
        { name: 'ppocr-det', version: '1', state: 'READY', reason: '' },
      ]),
    )
  })

  it('returns exactly what onnxruntime computes directly, and echoes the request id', async () => {
    const request = exampleInferRequest(7)
    const response = await api.post('/v2/models/ppocr-cls/infer', request)
    expect(response.status).toBe(200)
    expect(response.body).toMatchObject({ model_name: 'ppocr-cls', model_version: '1', id: 'example-7' })
    const direct = await runDirect(bundledModelPath('ppocr-cls'), {
      x: new ort.Tensor('float32', Float32Array.from(exampleTextLine(7)), [...EXAMPLE_SHAPE]),
    })
    const output = outputByName(response.body, 'softmax_0.tmp_0')
    expect(output.shape).toEqual([1, 2])
    expect(output.data).toEqual(Array.from(direct['softmax_0.tmp_0']!.data as Float32Array))
  })

  it('accepts nested tensor data and the versioned route, with the same answer as flat data', async () => {
    const flat = exampleTextLine(3)
    const [, c, h, w] = EXAMPLE_SHAPE
    const nested = [Array.from({ length: c }, (_, ci) => Array.from({ length: h }, (_, y) => flat.slice((ci * h + y) * w, (ci * h + y + 1) * w)))]
    const fromNested = await api.post('/v2/models/ppocr-cls/versions/1/infer', {
      inputs: [{ name: 'x', shape: [...EXAMPLE_SHAPE], datatype: 'FP32', data: nested }],
    })
    const fromFlat = await api.post('/v2/models/ppocr-cls/infer', exampleInferRequest(3))
    expect(fromNested.status).toBe(200)
    expect(outputByName(fromNested.body, 'softmax_0.tmp_0').data).toEqual(outputByName(fromFlat.body, 'softmax_0.tmp_0').data)
  })

  it('gives the same answer to a binary-tensor request as to the JSON one', async () => {
    const pixels = Float32Array.from(exampleTextLine(5))
    const binary = await postBinaryInfer(network.edge.url, network.apiKey, '/v2/models/ppocr-cls/infer', [
      { name: 'x', datatype: 'FP32', shape: [...EXAMPLE_SHAPE], bytes: new Uint8Array(pixels.buffer) },
    ], { id: 'bin-5' })
    expect(binary.status).toBe(200)
    expect(binary.headers.get('content-type')).toMatch(/^application\/json/) // no binary outputs asked for
    const json = await api.post('/v2/models/ppocr-cls/infer', exampleInferRequest(5))
    expect(binary.json.id).toBe('bin-5')
    expect(outputByName(binary.json, 'softmax_0.tmp_0').data).toEqual(outputByName(json.body, 'softmax_0.tmp_0').data)
    expect((await api.get('/v2')).body.extensions).toContain('binary_tensor_data')
  })

  it('runs a larger image through the detector identically to direct onnxruntime', async () => {
    const shape = [1, 3, 64, 96]
    const data = Array.from({ length: 3 * 64 * 96 }, (_, i) => Math.fround(Math.sin(i / 7) * 0.8))
    const response = await api.post('/v2/models/ppocr-det/infer', { inputs: [{ name: 'x', shape, datatype: 'FP32', data }] })
    expect(response.status).toBe(200)
    const direct = await runDirect(bundledModelPath('ppocr-det'), { x: new ort.Tensor('float32', Float32Array.from(data), shape) })
    const output = outputByName(response.body, 'sigmoid_0.tmp_0')
    expect(output.shape).toEqual([1, 1, 64, 96])
    expect(output.data).toEqual(Array.from(direct['sigmoid_0.tmp_0']!.data as Float32Array))
  })

  const x = (shape: number[], data: unknown, datatype = 'FP32') => ({ inputs: [{ name: 'x', shape, datatype, data }] })
  const small = (n: number) => Array.from({ length: n }, () => 0.5)
  it.each([
    ['malformed JSON', '/v2/models/ppocr-cls/infer', '{"inputs": [', 400, 'body'],
    ['no inputs', '/v2/models/ppocr-cls/infer', { inputs: [] }, 400, 'inputs'],
    ['an input without data', '/v2/models/ppocr-cls/infer', { inputs: [{ name: 'x', shape: [1], datatype: 'FP32' }] }, 400, 'inputs[0].data'],
    ['binary_data_size without the header-length header', '/v2/models/ppocr-cls/infer', { inputs: [{ name: 'x', shape: [1], datatype: 'FP32', parameters: { binary_data_size: 4 } }] }, 400, 'inputs[0].parameters.binary_data_size'],
    ['unsupported datatype', '/v2/models/ppocr-cls/infer', x([1], [1], 'COMPLEX64'), 400, 'inputs[0].datatype'],
    ['datatype other than the model input', '/v2/models/ppocr-cls/infer', x([1, 3, 1, 1], [1, 2, 3], 'INT32'), 400, 'inputs[0].datatype'],
    ['shape not matching the data length', '/v2/models/ppocr-cls/infer', x([1, 3, 48, 192], small(10)), 400, 'inputs[0].data'],
    ['nested data not matching the shape', '/v2/models/ppocr-cls/infer', x([1, 3], [[1, 2]]), 400, 'inputs[0].data[0]'],
    ['shape of the wrong rank for the model', '/v2/models/ppocr-cls/infer', x([3, 4], small(12)), 400, 'inputs[0].shape'],
    ['fixed dimension mismatch', '/v2/models/ppocr-cls/infer', x([1, 4, 2, 2], small(16)), 400, 'inputs[0].shape'],
    ['a string where a number belongs', '/v2/models/ppocr-cls/infer', x([1], ['a']), 400, 'inputs[0].data[0]'],
    ['unknown input name', '/v2/models/ppocr-cls/infer', { inputs: [{ name: 'image', shape: [1], datatype: 'FP32', data: [1] }] }, 400, 'inputs[0].name'],
    ['unknown output name', '/v2/models/ppocr-cls/infer', { ...x([1, 3, 48, 192], small(3 * 48 * 192)), outputs: [{ name: 'logits' }] }, 400, 'outputs[0].name'],
    ['negative dimension', '/v2/models/ppocr-cls/infer', x([1, -3], []), 400, 'inputs[0].shape[1]'],
    ['unknown model', '/v2/models/no-such-model/infer', x([1], [1]), 404, 'model'],
    ['unknown version', '/v2/models/ppocr-cls/versions/9/infer', x([1], [1]), 404, 'version'],
  ])('rejects %s with a problem naming the field', async (_name, path, body, status, field) => {
    const response = await api.post(path, body)
    expect(response.status).toBe(status)
    expect(response.headers.get('content-type')).toMatch(/^application\/problem\+json/)
    expect(response.body).toMatchObject({ status, field, type: expect.stringMatching(/^urn:depinfer:problem:/) })
    expect(response.body.error).toEqual(response.body.detail) // the v2 "error" string
    expect(String(response.body.detail).length).toBeGreaterThan(10)
  })

  it('rejects an oversized body with 413 problem+json', async () => {
    const huge = JSON.stringify(x([1, 3, 1024, 512], small(3 * 1024 * 512)))
    expect(huge.length).toBeGreaterThan(MAX_BODY_BYTES)
    const response = await api.post('/v2/models/ppocr-cls/infer', huge)
    expect(response.status).toBe(413)
    expect(response.body).toMatchObject({ status: 413, field: 'body' })
  })

  it('reports an input the model itself cannot process as 422, and the device keeps serving', async () => {
    // Valid by the metadata (dynamic H and W), but the detector needs multiples of 32.
    const rejected = await api.post('/v2/models/ppocr-det/infer', x([1, 3, 40, 40], small(3 * 40 * 40)))
    expect(rejected.status).toBe(422)
    expect(rejected.body).toMatchObject({ field: 'inputs', detail: expect.stringContaining('onnxruntime') })
    const after = await api.post('/v2/models/ppocr-cls/infer', exampleInferRequest(1))
    expect(after.status).toBe(200)
  })

  it('refuses every route but health without a valid key, with 401 problem+json', async () => {
    for (const path of ['/v2', '/v2/models/ppocr-cls', '/v2/models/ppocr-cls/ready']) {
      const missing = await fetch(`${network.edge.url}${path}`)
      expect(missing.status).toBe(401)
      expect(missing.headers.get('www-authenticate')).toMatch(/^Bearer/)
      expect(await missing.json()).toMatchObject({ status: 401, field: 'Authorization' })
      const wrong = await fetch(`${network.edge.url}${path}`, { headers: { Authorization: 'Bearer dpi_not-a-key' } })
      expect(wrong.status).toBe(401)
    }
    const infer = await fetch(`${network.edge.url}/v2/models/ppocr-cls/infer`, { method: 'POST', body: '{}' })
    expect(infer.status).toBe(401)
  })

  it('serves many concurrent requests, each with its own correct answer', async () => {
    const seeds = Array.from({ length: 24 }, (_, i) => i + 100)
    const responses = await Promise.all(seeds.map((seed) => api.post('/v2/models/ppocr-cls/infer', exampleInferRequest(seed))))
    for (const [i, response] of responses.entries()) {
      expect(response.status).toBe(200)
      expect(response.body.id).toBe(`example-${seeds[i]}`)
    }
    const direct = await runDirect(bundledModelPath('ppocr-cls'), {
      x: new ort.Tensor('float32', Float32Array.from(exampleTextLine(seeds[5]!)), [...EXAMPLE_SHAPE]),
    })
    // Concurrent jobs may share a batched run on the device, where float sums can round
    // differently in the last bits: equal to direct onnxruntime within 1e-6.
    const got = outputByName(responses[5]!.body, 'softmax_0.tmp_0').data as number[]
    Array.from(direct['softmax_0.tmp_0']!.data as Float32Array).forEach((value, k) => expect(got[k]).toBeCloseTo(value, 6))
  })
})
