/**
 * The edge can also reach the broker over WebSocket (`ws://` / `wss://` BROKER_URL), for brokers
 * exposed only through an HTTP front. Same answers as over TCP.
 */
import * as ort from 'onnxruntime-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bundledModelPath } from '../../device-agent/src/models/bundled.js'
import type { LocalBroker } from '../../scripts/local/broker.js'
import { EXAMPLE_SHAPE, exampleInferRequest, exampleTextLine } from '../../scripts/local/example-input.js'
import { startLocalNetwork, type LocalNetwork } from '../../scripts/local/network.js'
import { apiClient, BROKERS, outputByName, runDirect, waitForModelReady, type ApiClient } from './support.js'

describe.each(BROKERS)('edge ↔ $name over WebSocket', (brokerKind) => {
  let broker: LocalBroker
  let network: LocalNetwork
  let api: ApiClient

  beforeAll(async () => {
    broker = await brokerKind.start()
    network = await startLocalNetwork({ broker, build: false, edgeOverWebSocket: true, agents: [{ deviceId: 'ws-device', models: 'ppocr-cls' }] })
    api = apiClient(network.edge.url, network.apiKey)
    await waitForModelReady(api, 'ppocr-cls')
  })
  afterAll(async () => {
    await network?.close()
    await broker?.close()
  })

  it('routes an inference and returns what onnxruntime computes directly', async () => {
    const response = await api.post('/v2/models/ppocr-cls/infer', exampleInferRequest(11))
    expect(response.status).toBe(200)
    const direct = await runDirect(bundledModelPath('ppocr-cls'), {
      x: new ort.Tensor('float32', Float32Array.from(exampleTextLine(11)), [...EXAMPLE_SHAPE]),
    })
    expect(outputByName(response.body, 'softmax_0.tmp_0').data).toEqual(Array.from(direct['softmax_0.tmp_0']!.data as Float32Array))
  })
})
