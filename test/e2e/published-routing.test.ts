/**
 * Routing by the registry and by deadlines, through the real parts (workerd, D1, broker, agents):
 * a published model name is served only in its published versions and files, whatever devices
 * advertise under it; a published version no device serves is unavailable, not unknown; the
 * deadline a caller picks neither costs a device its standing nor halves the only device's time;
 * and a published model's run past its deadline or its device's memory limit is stopped.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import mqtt from 'mqtt'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ALL_DEVICE_STATUS, DeviceStatusSchema, gatewayClientId, type DeviceStatus } from '@depinfer/shared'
import { bundledModelPath } from '../../device-agent/src/models/bundled.js'
import { quantizeModel } from '../../device-agent/src/quantize/index.js'
import type { AgentProcess } from '../../scripts/local/agent-process.js'
import { exampleInferRequest } from '../../scripts/local/example-input.js'
import { startLocalNetwork, type LocalNetwork } from '../../scripts/local/network.js'
import { waitFor } from '../../scripts/local/wait-for.js'
import * as ort from 'onnxruntime-node'
import { memoryHungryModel, slowModel, tinyClassifierModel } from '../helpers/onnx-model.js'
import { apiClient, readyDevices, runDirect, waitForModelReady, type ApiClient, type ApiResponse } from './support.js'
import { temporaryDirectory } from '../helpers/temporary-directory.js'

const PAYOUT = '0x00000000000000000000000000000000000000aa'
const parameters = (response: ApiResponse) => response.body.parameters as Record<string, unknown> | undefined

describe('routing by the registry and by deadlines', () => {
  let network: LocalNetwork
  let api: ApiClient
  let observer: mqtt.MqttClient
  let honest: AgentProcess
  const statuses = new Map<string, DeviceStatus>()
  const dir = temporaryDirectory('depinfer-published-')
  const clsPath = bundledModelPath('ppocr-cls')

  beforeAll(async () => {
    network = await startLocalNetwork({ build: false, agents: [] })
    api = apiClient(network.edge.url, network.apiKey)
    observer = await mqtt.connectAsync(network.broker.tcpUrl, { clientId: gatewayClientId('published-observer') })
    observer.on('message', (_topic, payload) => {
      const status = DeviceStatusSchema.safeParse(JSON.parse(payload.toString()))
      if (status.success) statuses.set(status.data.deviceId, status.data)
    })
    await observer.subscribeAsync(ALL_DEVICE_STATUS, { qos: 1 })

    const published = await api.post(`/api/models?${new URLSearchParams({ name: 'pub-cls', price_wei: '0', payout_address: PAYOUT })}`, readFileSync(clsPath), {
      'Content-Type': 'application/octet-stream',
    })
    expect(published.status, published.text).toBe(201)
    // First, a device advertising the published name under an unpublished version (the published
    // file itself), and version 1 with another file (the int8 one our quantizer makes, same
    // tensors); plus a model of its own that nobody published, which it may serve. Seen first,
    // its file must not hide the devices that run the published one.
    const otherFile = join(dir, 'other.onnx')
    writeFileSync(otherFile, (await quantizeModel(readFileSync(clsPath))).bytes)
    const ownFile = join(dir, 'own.onnx')
    writeFileSync(ownFile, tinyClassifierModel().bytes)
    const configPath = join(dir, 'rogue.json')
    writeFileSync(
      configPath,
      JSON.stringify({
        models: [
          { name: 'pub-cls', version: '99', path: clsPath },
          { name: 'pub-cls', version: '1', path: otherFile },
          { name: 'rogue-own', version: '1', path: ownFile },
        ],
      }),
    )
    network.startAgent({ deviceId: 'rogue', configPath })
    await waitFor('the rogue device serving all three', async () => {
      const models = statuses.get('rogue')?.models ?? []
      return models.length === 3 && models.every((m) => m.state === 'ready') ? true : undefined
    }, 60_000)
    await waitForModelReady(api, 'rogue-own')
    honest = network.startAgent({
      deviceId: 'honest',
      models: 'published:pub-cls@1',
      env: { DEPINFER_EDGE_URL: network.edge.url, DEPINFER_API_KEY: network.apiKey, DEPINFER_MODEL_CACHE: join(dir, 'cache') },
    })
    await waitForModelReady(api, 'pub-cls')
  })
  afterAll(async () => {
    await observer?.endAsync()
    await network?.close()
  })

  it('serves a published name only in its published versions, running the published file', async () => {
    for (let i = 0; i < 8; i++) {
      const response = await api.post('/v2/models/pub-cls/infer', exampleInferRequest(i))
      expect(response.status, response.text).toBe(200)
      expect(response.body).toMatchObject({ model_version: '1', parameters: { device_id: 'honest' } })
    }
    const metadata = await api.get('/v2/models/pub-cls')
    expect(metadata.body).toMatchObject({ versions: ['1'], parameters: { version: '1', ready_devices: 1 } })
    expect((await api.get('/v2/models/pub-cls/versions/99')).body).toMatchObject({ status: 404, field: 'version' })
    expect((await api.post('/v2/models/pub-cls/versions/99/infer', exampleInferRequest(9))).body).toMatchObject({ status: 404, field: 'version' })
    const index = (await api.post('/v2/repository/index')).body as unknown as { name: string; version: string; state: string }[]
    expect(index.filter((e) => e.name === 'pub-cls')).toEqual([expect.objectContaining({ version: '1', state: 'READY' })])
    // The same device's own, unpublished model is served as before.
    const own = await api.post('/v2/models/rogue-own/infer', { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] })
    expect(own.status, own.text).toBe(200)
    expect(parameters(own)?.device_id).toBe('rogue')
  })

  it('does not count a deadline the caller made too short against the device', async () => {
    for (let i = 0; i < 4; i++) {
      const response = await api.post('/v2/models/pub-cls/infer', { ...exampleInferRequest(10 + i), parameters: { timeout_ms: 1 } })
      expect(response.status, response.text).toBe(504)
      // Asking again the same way would time out again: no Retry-After, and what to change.
      expect(response.headers.get('retry-after'), response.text).toBeNull()
      expect(response.body.detail).toMatch(/did not answer within 1 ms, less than the model takes there: a longer parameters\.timeout_ms \(up to the edge's JOB_DEADLINE_MS\) may let it finish$/)
      expect(response.body.field).toBe('parameters.timeout_ms')
    }
    // Three timeouts in a row would make a device suspect (out of service for a minute).
    const after = await api.post('/v2/models/pub-cls/infer', exampleInferRequest(20))
    expect(after.status, after.text).toBe(200)
    expect(((await (await fetch(`${network.edge.url}/v2/health/ready`)).json()) as { devices_online: number }).devices_online).toBe(2)
  })

  it('gives the only device that can run a job the whole deadline, and forgives it when it answers late', async () => {
    honest.child.kill('SIGSTOP')
    try {
      const started = Date.now()
      const response = await api.post('/v2/models/pub-cls/infer', { ...exampleInferRequest(30), parameters: { timeout_ms: 2_000 } })
      const elapsed = Date.now() - started
      expect(response.body).toMatchObject({ status: 504 })
      // The budget is what is left of the 2 s when the Gateway sends the job: all of it, not half.
      expect(Number(/within (\d+) ms/.exec(String(response.body.detail))?.[1])).toBeGreaterThan(1_900)
      expect(elapsed).toBeGreaterThanOrEqual(1_950)
      expect(elapsed).toBeLessThan(3_500)
      // Two more: three timeouts in a row make a device suspect, out of service for a minute …
      for (const seed of [32, 33]) {
        expect((await api.post('/v2/models/pub-cls/infer', { ...exampleInferRequest(seed), parameters: { timeout_ms: 1_500 } })).status).toBe(504)
      }
    } finally {
      honest.child.kill('SIGCONT')
    }
    // … but the device now gets the three jobs, runs them and answers, late: it was slow, not
    // gone, and is back in service at once rather than after that minute.
    await waitFor('pub-cls answering again', async () => ((await api.post('/v2/models/pub-cls/infer', exampleInferRequest(31))).status === 200 ? true : undefined), 20_000)
  })

  it('answers for a published version no device serves as unavailable, not unknown', async () => {
    await honest.stop()
    const metadata = await api.get('/v2/models/pub-cls')
    expect(metadata.status, metadata.text).toBe(200)
    expect(metadata.body).toMatchObject({
      versions: ['1'],
      inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 3, -1, -1] }],
      parameters: { version: '1', state: 'UNAVAILABLE', ready_devices: 0 },
    })
    expect((await api.get('/v2/models/pub-cls/ready')).status).toBe(400)
    // The rogue device still serves version 1 — another file — and 99: neither gets the job.
    const response = await api.post('/v2/models/pub-cls/infer', exampleInferRequest(40))
    expect(response.status).toBe(503)
    expect(response.headers.get('retry-after')).toMatch(/^\d+$/)
    expect(response.body).toMatchObject({ type: 'urn:depinfer:problem:no-capacity', field: 'model' })
    const index = (await api.post('/v2/repository/index', { ready: true })).body as unknown as { name: string }[]
    expect(index.map((e) => e.name)).toEqual(['rogue-own'])
  })

  it('answers a request a published version could never run with a 400, while no device has ever served it', async () => {
    const published = await api.post(`/api/models?${new URLSearchParams({ name: 'never-served', price_wei: '0', payout_address: PAYOUT })}`, tinyClassifierModel().bytes, {
      'Content-Type': 'application/octet-stream',
    })
    expect(published.status, published.text).toBe(201)
    const good = { name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }
    // Nothing wrong with the request: no device, come back later.
    const unserved = await api.post('/v2/models/never-served/infer', { inputs: [good] })
    expect(unserved.status, unserved.text).toBe(503)
    expect(unserved.headers.get('retry-after')).toMatch(/^\d+$/)
    // Wrong for the version whoever serves it: the client's to fix, not to retry. The registry
    // knows the version's tensors.
    for (const [request, field] of [
      [{ inputs: [{ ...good, name: 'nope' }] }, 'inputs[0].name'],
      [{ inputs: [{ ...good, datatype: 'FP64' }] }, 'inputs[0].datatype'],
      [{ inputs: [{ ...good, shape: [2, 2] }] }, 'inputs[0].shape'],
      [{ inputs: [good], outputs: [{ name: 'nope' }] }, 'outputs[0].name'],
    ] as const) {
      for (const path of ['/v2/models/never-served/infer', '/v2/models/never-served/versions/1/infer']) {
        const bad = await api.post(path, request)
        expect(bad.status, `${path} ${JSON.stringify(request)}: ${bad.text}`).toBe(400)
        expect(bad.headers.get('content-type')).toMatch(/^application\/problem\+json/)
        expect(bad.body.field).toBe(field)
      }
    }
  })
  it('serves callers pinned to an older version on devices that keep it (versions "all"), and names the served versions elsewhere', async () => {
    const tiny = tinyClassifierModel().bytes
    const publish = async (price: string) => {
      const response = await api.post(`/api/models?${new URLSearchParams({ name: 'multi', price_wei: price, payout_address: PAYOUT })}`, tiny, {
        'Content-Type': 'application/octet-stream',
      })
      expect(response.status, response.text).toBe(201)
      return response.body.version as string
    }
    expect([await publish('0'), await publish('1')]).toEqual(['1', '2'])
    const job = { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] }
    const edgeEnv = (cache: string) => ({ DEPINFER_EDGE_URL: network.edge.url, DEPINFER_API_KEY: network.apiKey, DEPINFER_MODEL_CACHE: join(dir, cache) })

    // A device serving the newest version only: a caller pinned to version 1 is told what is served.
    const newest = network.startAgent({ deviceId: 'newest-only', models: 'published:multi', env: edgeEnv('cache-newest') })
    await waitForModelReady(api, 'multi')
    expect((await api.post('/v2/models/multi/versions/2/infer', job)).status).toBe(200)
    const pinned = await api.post('/v2/models/multi/versions/1/infer', job)
    expect(pinned.status, pinned.text).toBe(503)
    expect(pinned.body.detail).toBe('no online device serves model multi version 1; devices serve version 2 of it')

    // A device serving every version: version 1 is served again, version 2 by both.
    const every = network.startAgent({ deviceId: 'every-version', models: 'published:multi@all', env: edgeEnv('cache-every') })
    await waitFor('version 1 served', async () => ((await api.get('/v2/models/multi/versions/1/ready')).status === 200 ? true : undefined), 60_000)
    const served = await api.post('/v2/models/multi/versions/1/infer', job)
    expect(served.status, served.text).toBe(200)
    expect(parameters(served)?.device_id).toBe('every-version')
    // The device keeping version 1 goes: the catalog remembers version 1 (unavailable), and a
    // caller pinned to it is told what is served again.
    await every.stop()
    await waitFor('version 1 unavailable', async () => ((await api.get('/v2/models/multi/versions/1/ready')).status === 400 ? true : undefined), 20_000)
    const dropped = await api.post('/v2/models/multi/versions/1/infer', job)
    expect(dropped.status, dropped.text).toBe(503)
    expect(dropped.body.detail).toBe('no online device serves model multi version 1; devices serve version 2 of it')
    // Once no device is there, no version is said to be served (the catalog still remembers them).
    await newest.stop()
    await waitFor('multi unavailable', async () => ((await api.get('/v2/models/multi/versions/2/ready')).status === 400 ? true : undefined), 20_000)
    const gone = await api.post('/v2/models/multi/versions/1/infer', job)
    expect(gone.body.detail).toBe('no online device serves model multi version 1')
  })
  it('stops a published model\'s run at the caller\'s deadline (504) and one past the device\'s memory limit (422 model-failed naming inputs); the device serves the next jobs', async () => {
    const slowPath = join(dir, 'slow.onnx')
    writeFileSync(slowPath, slowModel())
    const hungryPath = join(dir, 'hungry.onnx')
    writeFileSync(hungryPath, memoryHungryModel())
    for (const [name, path] of [['pub-slow', slowPath], ['pub-hungry', hungryPath]] as const) {
      const published = await api.post(`/api/models?${new URLSearchParams({ name, price_wei: '0', payout_address: PAYOUT })}`, readFileSync(path), {
        'Content-Type': 'application/octet-stream',
      })
      expect(published.status, published.text).toBe(201)
    }
    const agent = network.startAgent({
      deviceId: 'guarded',
      models: 'published:pub-slow,published:pub-hungry',
      env: { DEPINFER_EDGE_URL: network.edge.url, DEPINFER_API_KEY: network.apiKey, DEPINFER_MODEL_CACHE: join(dir, 'cache'), DEPINFER_ORT_PROCESS_MEMORY_MB: '384' },
    })
    try {
      await waitForModelReady(api, 'pub-slow')
      await waitForModelReady(api, 'pub-hungry')
      expect(statuses.get('guarded')?.models.map((model) => model.thread)).toEqual(['child-process', 'child-process'])

      const x = Array.from({ length: 2 * 64 }, (_, i) => Math.cos(i * 0.7))
      const slowRequest = (iterations: number, timeoutMs?: number) => ({
        inputs: [
          { name: 'x', datatype: 'FP32', shape: [2, 64], data: x },
          { name: 'iterations', datatype: 'INT64', shape: [], data: [iterations] },
        ],
        ...(timeoutMs !== undefined && { parameters: { timeout_ms: timeoutMs } }),
      })
      // 10^9 iterations take many minutes; the caller gives 2 s.
      const started = Date.now()
      const stuck = await api.post('/v2/models/pub-slow/infer', slowRequest(1e9, 2_000))
      expect(stuck.status, stuck.text).toBe(504)
      expect(Date.now() - started).toBeLessThan(6_000)
      const answered = await api.post('/v2/models/pub-slow/infer', slowRequest(100))
      expect(answered.status, answered.text).toBe(200)
      const direct = await runDirect(slowPath, {
        x: new ort.Tensor('float32', Float32Array.from(x), [2, 64]),
        iterations: new ort.Tensor('int64', BigInt64Array.of(100n), []),
      })
      const [y] = answered.body.outputs as { data: number[] }[]
      expect(Float32Array.from(y!.data)).toEqual(direct.y!.data)

      // 2 GiB of ones against a 384 MB limit; 16 MB within it.
      const hungryRequest = (dims: number[]) => ({ inputs: [{ name: 'shape', datatype: 'INT64', shape: [3], data: dims }] })
      const refused = await api.post('/v2/models/pub-hungry/infer', hungryRequest([512, 1024, 1024]))
      expect(refused.status, refused.text).toBe(422)
      expect(refused.body).toMatchObject({ type: 'urn:depinfer:problem:model-failed', field: 'inputs', detail: expect.stringMatching(/on every device that tried it \(guarded\).*more than 384 MB of memory/) })
      const small = await api.post('/v2/models/pub-hungry/infer', hungryRequest([4, 1024, 1024]))
      expect(small.status, small.text).toBe(200)
      const sum = (await runDirect(hungryPath, { shape: new ort.Tensor('int64', BigInt64Array.of(4n, 1024n, 1024n), [3]) })).sum!.data
      expect(Float32Array.from((small.body.outputs as { data: number[] }[])[0]!.data)).toEqual(sum)

      // A device with more memory runs what this one cannot, and this one is not blamed for its
      // limit: it keeps its place for every model (an audit: counted as a lie, one such job a
      // minute kept small devices out of scheduling).
      const roomy = network.startAgent({
        deviceId: 'roomy',
        models: 'published:pub-hungry',
        env: { DEPINFER_EDGE_URL: network.edge.url, DEPINFER_API_KEY: network.apiKey, DEPINFER_MODEL_CACHE: join(dir, 'cache-roomy'), DEPINFER_ORT_PROCESS_MEMORY_MB: '4096' },
      })
      try {
        await waitFor('two devices for pub-hungry', async () => ((await readyDevices(api, 'pub-hungry')) === 2 ? true : undefined), 60_000)
        const large = [128, 1024, 1024] // 512 MB of ones
        const expected = (await runDirect(hungryPath, { shape: new ort.Tensor('int64', BigInt64Array.from(large, BigInt), [3]) })).sum!.data
        // Either device may be picked first: until the job has gone to this one first, then the other.
        let retried = false
        for (let i = 0; i < 12 && !retried; i++) {
          const answer = await api.post('/v2/models/pub-hungry/infer', hungryRequest(large))
          expect(answer.status, answer.text).toBe(200)
          expect(parameters(answer)?.device_id).toBe('roomy')
          expect(Float32Array.from((answer.body.outputs as { data: number[] }[])[0]!.data)).toEqual(expected)
          retried = parameters(answer)?.attempts === 2
        }
        expect(retried).toBe(true)
        const slowAfter = await api.post('/v2/models/pub-slow/infer', slowRequest(10))
        expect(slowAfter.status, slowAfter.text).toBe(200)
      } finally {
        await roomy.stop()
      }
    } finally {
      await agent.stop()
    }
  })

  it('answers a model name in the wrong letter case with a 404 naming the served one', async () => {
    const response = await api.post('/v2/models/Rogue-Own/infer', { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] })
    expect(response.status, response.text).toBe(404)
    expect(response.body).toMatchObject({ field: 'model', detail: 'unknown model "Rogue-Own" (names are case-sensitive: "rogue-own" is served)' })
  })

  // Here, with CORS off (wrangler.toml's default): the CORS middleware used to be what kept the
  // header on problem responses.
  it('echoes X-Request-Id on every answer, problems included, and makes one up when none is sent', async () => {
    const traced = { 'X-Request-Id': 'trace-7f3a' }
    for (const [path, body] of [
      ['/v2/models/pub-cls/versions/99/infer', exampleInferRequest(6)],
      ['/v2/models/rogue-own/infer', { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] }],
      ['/v2/models/rogue-own/infer', '{"inputs": ['],
      ['/v2/models/no-such-model/infer', {}],
      ['/v2/no-such-route', {}],
    ] as const) {
      const response = await api.post(path, body, traced)
      expect(response.headers.get('x-request-id'), `${path} ${response.status}`).toBe('trace-7f3a')
    }
    const unauthorized = await fetch(`${network.edge.url}/v2/models/rogue-own`, { headers: traced })
    expect([unauthorized.status, unauthorized.headers.get('x-request-id')]).toEqual([401, 'trace-7f3a'])
    expect((await api.post('/v2/models/rogue-own/infer', '{')).headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/)
  })
})
