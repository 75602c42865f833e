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
import { createGzip, deflateSync, gzipSync } from 'node:zlib'
import type { LocalBroker } from '../../scripts/local/broker.js'
import { EXAMPLE_SHAPE, exampleInferRequest, exampleTextLine } from '../../scripts/local/example-input.js'
import { startLocalNetwork, type LocalNetwork } from '../../scripts/local/network.js'
import { apiClient, BROKERS, outputByName, postBinaryInfer, runDirect, waitForModelReady, type ApiClient } from './support.js'

const MAX_BODY_BYTES = 4 * 1024 * 1024

/** gzip of `bytes` zeros (~1000:1), made once: far past MAX_BODY_BYTES decoded, far below it sent. */
let bomb: Promise<Uint8Array> | undefined
function gzipBomb(bytes: number): Promise<Uint8Array> {
  bomb ??= new Promise((resolve, reject) => {
    const gzip = createGzip({ level: 9 })
    const out: Buffer[] = []
    gzip.on('data', (chunk: Buffer) => out.push(chunk))
    gzip.once('error', reject)
    const zeros = Buffer.alloc(1 << 20)
    for (let written = 0; written < bytes; written += zeros.byteLength) gzip.write(zeros)
    gzip.end(() => resolve(new Uint8Array(Buffer.concat(out))))
  })
  return bomb
}

/** A browser page's origin the edge below allows (CORS_ALLOW_ORIGINS). */
const BROWSER_ORIGIN = 'https://app.example'

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
      edgeVars: { MAX_BODY_BYTES: String(MAX_BODY_BYTES), CORS_ALLOW_ORIGINS: `${BROWSER_ORIGIN}, HTTPS://Other.Example:443/` },
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
    // HEAD: GET's status and headers, Content-Length included, and no body.
    const head = await fetch(`${network.edge.url}/v2/health/live`, { method: 'HEAD' })
    expect(head.status).toBe(200)
    expect(head.headers.get('content-length')).toBe(String(new TextEncoder().encode(await live.text()).byteLength))
    expect(await head.text()).toBe('')
    // Still no key needed: a wrong method on an open route is a 405, not a 401.
    const posted = await fetch(`${network.edge.url}/v2/health/live`, { method: 'POST' })
    expect(posted.status).toBe(405)
    expect(posted.headers.get('allow')).toBe('GET, HEAD')
  })

  it('lets a browser page on an allowed origin call the API (CORS), and no other origin', async () => {
    const infer = `${network.edge.url}/v2/models/ppocr-cls/infer`
    const preflight = (origin: string) =>
      fetch(infer, {
        method: 'OPTIONS',
        headers: { Origin: origin, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'authorization, content-type, inference-header-content-length' },
      })
    // The preflight: no key (browsers send none), the methods and headers a binary request needs.
    const allowed = await preflight(BROWSER_ORIGIN)
    expect(allowed.status).toBe(204)
    expect(allowed.headers.get('access-control-allow-origin')).toBe(BROWSER_ORIGIN)
    expect(allowed.headers.get('access-control-allow-methods')?.split(',')).toContain('POST')
    // And PUT, which a resumable upload's parts take.
    const parts = await fetch(`${network.edge.url}/api/models/uploads/u1/parts/1`, {
      method: 'OPTIONS',
      headers: { Origin: BROWSER_ORIGIN, 'Access-Control-Request-Method': 'PUT', 'Access-Control-Request-Headers': 'authorization, content-type' },
    })
    expect(parts.status).toBe(204)
    expect(parts.headers.get('access-control-allow-methods')?.split(',')).toContain('PUT')
    const allowHeaders = allowed.headers.get('access-control-allow-headers')!.toLowerCase().split(',')
    expect(allowHeaders).toEqual(expect.arrayContaining(['authorization', 'content-type', 'inference-header-content-length']))
    expect(allowed.headers.get('access-control-allow-credentials')).toBeNull()
    expect(allowed.headers.get('vary')).toMatch(/Origin/)
    // The second listed origin is allowed as well, though the setting spells it otherwise.
    expect((await preflight('https://other.example')).headers.get('access-control-allow-origin')).toBe('https://other.example')
    // Another origin gets no grant (the browser then refuses to send the request).
    const refused = await preflight('https://evil.example')
    expect(refused.headers.get('access-control-allow-origin')).toBeNull()

    // The request itself: answered with the grant, and the binary-tensor header readable.
    const shape = [1, 3, 48, 192]
    const data = Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => Math.sin(i) / 2)
    const answered = await fetch(infer, {
      method: 'POST',
      headers: { Origin: BROWSER_ORIGIN, Authorization: `Bearer ${network.apiKey}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ inputs: [{ name: 'x', shape, datatype: 'FP32', data }] }),
    })
    expect(answered.status).toBe(200)
    expect(answered.headers.get('access-control-allow-origin')).toBe(BROWSER_ORIGIN)
    expect(answered.headers.get('access-control-expose-headers')!.toLowerCase().split(',')).toEqual(
      expect.arrayContaining(['inference-header-content-length', 'retry-after', 'x-request-id']),
    )
    // A problem carries the grant too, or the page could not read why it failed.
    const unauthorized = await fetch(infer, { method: 'POST', headers: { Origin: BROWSER_ORIGIN, 'Content-Type': 'application/json' }, body: '{}' })
    expect(unauthorized.status).toBe(401)
    expect(unauthorized.headers.get('access-control-allow-origin')).toBe(BROWSER_ORIGIN)
    expect(((await unauthorized.json()) as { status: number }).status).toBe(401)
    const other = await fetch(`${network.edge.url}/v2/health/live`, { headers: { Origin: 'https://evil.example' } })
    expect(other.status).toBe(200)
    expect(other.headers.get('access-control-allow-origin')).toBeNull()
    // An OPTIONS that is no preflight (no Origin) is still what any method a route lacks is: a 405.
    expect((await fetch(infer, { method: 'OPTIONS' })).status).toBe(405)
  })

  it('answers a known path asked with another method 405 with Allow, and an unknown path 404', async () => {
    const call = (method: string, path: string, key: string | undefined = network.apiKey) =>
      fetch(`${network.edge.url}${path}`, { method, headers: key === undefined ? {} : { Authorization: `Bearer ${key}` } })
    for (const [method, path, allow] of [
      ['PUT', '/v2/models/ppocr-cls/infer', 'POST'],
      ['GET', '/v2/models/ppocr-cls/versions/1/infer', 'POST'],
      ['GET', '/v2/repository/index', 'POST'],
      ['DELETE', '/v2/models/ppocr-cls', 'GET, HEAD'],
      ['POST', '/v2/models/ppocr-cls/ready', 'GET, HEAD'],
      ['POST', '/v2', 'GET, HEAD'],
      ['PATCH', '/api/models', 'POST, GET, HEAD'],
    ] as const) {
      const response = await call(method, path)
      expect(response.status, `${method} ${path}`).toBe(405)
      expect(response.headers.get('allow'), `${method} ${path}`).toBe(allow)
      expect(response.headers.get('content-type')).toMatch(/^application\/problem\+json/)
      const problem = (await response.json()) as Record<string, unknown>
      expect(problem).toMatchObject({ status: 405, field: 'method', type: 'urn:depinfer:problem:method-not-allowed', instance: path })
      if (path.startsWith('/v2')) expect(problem.error).toBe(problem.detail)
    }
    // Which methods a path answers is public (README): no key is needed to learn it.
    expect((await call('PUT', '/v2/models/ppocr-cls/infer', undefined)).status).toBe(405)
    for (const [method, path] of [['GET', '/v2/no-such-route'], ['PUT', '/v2/models/ppocr-cls/infer/more'], ['GET', '/nothing']]) {
      const response = await call(method!, path!)
      expect(response.status, `${method} ${path}`).toBe(404)
      expect(await response.json()).toMatchObject({ status: 404, type: 'urn:depinfer:problem:no-such-route' })
    }
    // What the problem echoes of the request is cut short: a 100,000-character model name is
    // not sent back three times (detail, error, instance).
    const longName = await call('GET', `/v2/models/${'a'.repeat(100_000)}`)
    expect(longName.status).toBe(404)
    const text = await longName.text()
    expect(text.length).toBeLessThan(10_000)
    expect(JSON.parse(text)).toMatchObject({ field: 'model', detail: expect.stringMatching(/… \(\d+ more characters\)$/) })
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
      // The agent's default batching.maxBatch (README "Device agent").
      parameters: expect.objectContaining({ dynamic_batching_max_rows: 8, ready_devices: 1 }),
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
    // Only what it implements whole: no 'model_repository', whose load and unload it has not.
    expect((await api.get('/v2')).body.extensions).toEqual(['binary_tensor_data'])
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
    ['an output asked for twice', '/v2/models/ppocr-cls/infer', { ...x([1, 3, 48, 192], small(3 * 48 * 192)), outputs: [{ name: 'softmax_0.tmp_0' }, { name: 'softmax_0.tmp_0', parameters: { binary_data: true } }] }, 400, 'outputs[1].name'],
    ['negative dimension', '/v2/models/ppocr-cls/infer', x([1, -3], []), 400, 'inputs[0].shape[1]'],
    ['an empty batch', '/v2/models/ppocr-cls/infer', x([0, 3, 48, 192], []), 400, 'inputs[0].shape'],
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

  it('takes gzip and deflate bodies, JSON and binary, with the same answer as the plain ones', async () => {
    const request = exampleInferRequest(5)
    const plain = await api.post('/v2/models/ppocr-cls/infer', request)
    expect(plain.status).toBe(200)
    const expected = outputByName(plain.body, 'softmax_0.tmp_0').data
    const json = new TextEncoder().encode(JSON.stringify(request))
    for (const [encoding, body] of [['gzip', gzipSync(json)], ['deflate', deflateSync(json)], ['GZIP, identity', gzipSync(json)]] as const) {
      const response = await api.post('/v2/models/ppocr-cls/infer', new Uint8Array(body), { 'Content-Encoding': encoding })
      expect(response.status, encoding).toBe(200)
      expect(response.body.id).toBe('example-5')
      expect(outputByName(response.body, 'softmax_0.tmp_0').data, encoding).toEqual(expected)
    }
    // Binary extension: Inference-Header-Content-Length counts the decoded body's JSON header.
    const header = new TextEncoder().encode(JSON.stringify({ id: 'bin-gz', inputs: [{ name: 'x', datatype: 'FP32', shape: [...EXAMPLE_SHAPE], parameters: { binary_data_size: exampleTextLine(5).length * 4 } }] }))
    const binary = Buffer.concat([header, new Uint8Array(Float32Array.from(exampleTextLine(5)).buffer)])
    const response = await api.post('/v2/models/ppocr-cls/infer', new Uint8Array(gzipSync(binary)), {
      'Content-Encoding': 'gzip',
      'Content-Type': 'application/octet-stream',
      'Inference-Header-Content-Length': String(header.byteLength),
    })
    expect(response.status).toBe(200)
    expect(outputByName(response.body, 'softmax_0.tmp_0').data).toEqual(expected)
  })

  it('refuses a Content-Encoding it cannot undo with 415 naming it, and a body that is not what it says with 400', async () => {
    const json = JSON.stringify(exampleInferRequest(1))
    const br = await api.post('/v2/models/ppocr-cls/infer', json, { 'Content-Encoding': 'br' })
    expect(br.status).toBe(415)
    expect(br.headers.get('content-type')).toMatch(/^application\/problem\+json/)
    expect(br.headers.get('accept-encoding')).toBe('gzip, deflate, identity')
    expect(br.body).toMatchObject({ status: 415, field: 'Content-Encoding', type: 'urn:depinfer:problem:unsupported-content-encoding', detail: expect.stringContaining('"br"') })
    expect(br.body.error).toEqual(br.body.detail)
    const stacked = await api.post('/v2/models/ppocr-cls/infer', new Uint8Array(gzipSync(gzipSync(json))), { 'Content-Encoding': 'gzip, gzip' })
    expect(stacked.body).toMatchObject({ status: 415, field: 'Content-Encoding' })
    const mislabelled = await api.post('/v2/models/ppocr-cls/infer', json, { 'Content-Encoding': 'gzip' })
    expect(mislabelled.body).toMatchObject({ status: 400, field: 'body', detail: expect.stringContaining('not valid gzip') })
  })

  it('answers a gzip bomb 413: the limit is on the decompressed size', async () => {
    const body = await gzipBomb(512 * 1024 * 1024)
    expect(body.byteLength).toBeLessThan(MAX_BODY_BYTES / 4)
    const response = await api.post('/v2/models/ppocr-cls/infer', body, { 'Content-Encoding': 'gzip' })
    expect(response.status).toBe(413)
    expect(response.body).toMatchObject({ status: 413, field: 'body' })
    // The edge is still answering (and its memory was not spent on the bomb).
    expect((await api.post('/v2/models/ppocr-cls/infer', exampleInferRequest(2))).status).toBe(200)
  })

  it('reports an input the model itself cannot process as 422, and the device keeps serving', async () => {
    // Valid by the metadata (dynamic H and W), but the detector needs multiples of 32.
    const rejected = await api.post('/v2/models/ppocr-det/infer', x([1, 3, 40, 40], small(3 * 40 * 40)))
    expect(rejected.status).toBe(422)
    expect(rejected.body).toMatchObject({ field: 'inputs', detail: expect.stringContaining('onnxruntime') })
    // onnxruntime's message, without the source paths of its build.
    expect(rejected.body.detail).toContain('Non-zero status code')
    expect(rejected.body.detail).not.toMatch(/onnxruntime_src|\.h:\d+/)
    const after = await api.post('/v2/models/ppocr-cls/infer', exampleInferRequest(1))
    expect(after.status).toBe(200)
    // The caller has the reason; onnxruntime's own log line for it stays out of the provider's log.
    expect(network.agents.map((agent) => agent.output()).join('')).not.toContain('ExecuteKernel')
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

  it('says what is wrong with an Authorization header that is there but malformed', async () => {
    const detail = async (headers: Headers) => {
      const response = await fetch(`${network.edge.url}/v2`, { headers })
      expect(response.status).toBe(401)
      const problem = (await response.json()) as Record<string, unknown>
      expect(problem).toMatchObject({ status: 401, field: 'Authorization' })
      return String(problem.detail)
    }
    expect(await detail(new Headers())).toMatch(/^missing/)
    const repeated = new Headers()
    repeated.append('Authorization', `Bearer ${network.apiKey}`)
    repeated.append('Authorization', `Bearer ${network.apiKey}`)
    for (const [headers, why] of [
      [new Headers({ Authorization: 'Bearer a b' }), /2 words after Bearer/],
      [repeated, /several values/],
      [new Headers({ Authorization: 'Bearer' }), /without an API key/],
      [new Headers({ Authorization: 'Basic dXNlcjpwYXNz' }), /Basic scheme/],
      [new Headers({ Authorization: network.apiKey }), /no scheme/],
    ] as const) {
      const text = await detail(headers)
      expect(text).toMatch(/^malformed Authorization header/)
      expect(text).toMatch(why)
      expect(text).toContain('Bearer <api key>')
      expect(text).not.toContain(network.apiKey) // a key is never quoted back
    }
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
