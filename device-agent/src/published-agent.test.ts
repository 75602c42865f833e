/**
 * An agent serving models published on the edge, end to end: a real broker (the embedded aedes),
 * the fake edge's model API (models/testing/fake-edge.ts) and a real agent. The test plays the
 * gateway, as in agent.test.ts.
 */
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import mqtt from 'mqtt'
import * as ort from 'onnxruntime-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  attestationFromWire,
  bytesOf,
  decodeFrames,
  type DecodedFrame,
  DeviceStatusSchema,
  deviceJobsTopic,
  deviceStatusTopic,
  encodeFrame,
  joinFrames,
  gatewayClientId,
  gatewayResultsTopic,
  PROTOCOL_VERSION,
  sha256Hex,
  typedElements,
  type DeviceStatus,
  type Hex,
  type JobHeader,
  type RawTensor,
} from '@depinfer/shared'
import { startLocalBroker, type LocalBroker } from '../../scripts/local/broker.js'
import { waitFor } from '../../scripts/local/wait-for.js'
import { startAgent, type RunningAgent } from './agent.js'
import { AgentConfigSchema } from './config.js'
import { initDeviceKey } from './keys/device-key.js'
import { bundledModelPath } from './models/bundled.js'
import { cachedModelPath } from './models/download.js'
import { FakeEdge, sha256Of } from './models/testing/fake-edge.js'
import { temporaryDirectory } from '../../test/helpers/temporary-directory.js'

const DEVICE = 'provider-under-test'
const RESULTS = gatewayResultsTopic('test', DEVICE)
const KEY = 'provider-key'
const CLS = readFileSync(bundledModelPath('ppocr-cls'))
const CLS_SHA = sha256Of(CLS)
/** Another file (so it is not found in the cache under cls-pub's sha256); it is served corrupted and never loaded. */
const BAD = Buffer.concat([CLS, Buffer.from('another file')])
const INPUTS = [{ name: 'x', datatype: 'FP32' as const, shape: [-1, 3, -1, -1] }]
const OUTPUTS = [{ name: 'softmax_0.tmp_0', datatype: 'FP32' as const, shape: [-1, 2] }]
const idOf = (name: string): Hex => `0x${sha256Hex(name)}`
/** The frame the gateway at RESULTS sends for job `name` of `model` (`overrides` change its header). */
const jobFrame = (name: string, model: JobHeader['model'], inputs: RawTensor[], overrides: Partial<JobHeader> = {}): Buffer => {
  const header: JobHeader = {
    protocol: PROTOCOL_VERSION,
    jobId: idOf(name),
    replyTo: RESULTS,
    model,
    outputs: [],
    deadlineMs: 10_000,
    attempt: 1,
    attest: { chainId: '31337', verifyingContract: `0x${'42'.repeat(20)}`, salt: `0x${'5a'.repeat(32)}`, priceWei: '1000' },
    ...overrides,
  }
  return Buffer.from(encodeFrame(header, inputs))
}
const PUBLISHED_CLS = { name: 'cls-pub', version: '2', sha256: CLS_SHA }

describe('device agent serving published models', () => {
  let broker: LocalBroker
  let edge: FakeEdge
  let agent: RunningAgent
  let gateway: mqtt.MqttClient
  const statuses: DeviceStatus[] = []
  const results = new Map<string, DecodedFrame>()
  const cacheDir = temporaryDirectory('agent-cache-')
  const logs: string[] = []

  const lastStatus = () => statuses.at(-1)
  const modelIn = (status: DeviceStatus | undefined, name: string) => status?.models.find((m) => m.name === name)

  beforeAll(async () => {
    broker = await startLocalBroker()
    edge = await FakeEdge.start(KEY, [
      { name: 'cls-pub', version: '1', bytes: Buffer.from('not the newest: never downloaded'), inputs: INPUTS, outputs: OUTPUTS },
      // Slow to start, so the status shows it loading first.
      { name: 'cls-pub', version: '2', bytes: CLS, inputs: INPUTS, outputs: OUTPUTS },
      { name: 'cls-bad', version: '1', bytes: BAD, inputs: INPUTS, outputs: OUTPUTS },
    ])
    edge.faults.set('cls-pub@2', { delayMs: 1_500 })
    edge.faults.set('cls-bad@1', { corruptAt: 4242 })
    gateway = await mqtt.connectAsync(broker.tcpUrl, { clientId: gatewayClientId('test') })
    gateway.on('message', (topic, payload) => {
      if (topic === RESULTS) {
        for (const frame of decodeFrames(payload)) results.set(String(frame.header.jobId), frame)
      } else if (topic === deviceStatusTopic(DEVICE)) {
        statuses.push(DeviceStatusSchema.parse(JSON.parse(payload.toString())))
      }
    })
    await gateway.subscribeAsync([RESULTS, deviceStatusTopic(DEVICE)], { qos: 1 })
    const keyPath = join(temporaryDirectory('agent-key-'), 'device.key')
    initDeviceKey(keyPath)
    const config = AgentConfigSchema.parse({
      deviceId: DEVICE,
      broker: { url: broker.tcpUrl },
      models: [{ published: 'cls-pub' }, { published: 'cls-bad' }],
      edge: { url: edge.url, apiKey: KEY, pollSec: 0 },
      cacheDir,
      heartbeatSec: 0.2,
      keyPath,
    })
    agent = await startAgent(config, (message) => logs.push(message))
    await agent.modelsSettled
    // Published as each model settles: the last status is the one after both.
    await waitFor('the settled status', async () =>
      modelIn(lastStatus(), 'cls-pub')?.state === 'ready' && modelIn(lastStatus(), 'cls-bad')?.state === 'failed' ? true : undefined,
    )
  })
  afterAll(async () => {
    await agent?.stop()
    await gateway?.endAsync()
    await broker?.close()
    await edge?.close()
  })

  it('advertises the newest published version as loading while it downloads, then ready with the verified sha256', () => {
    const loading = statuses.find((s) => modelIn(s, 'cls-pub')?.state === 'loading')
    expect(modelIn(loading, 'cls-pub')).toMatchObject({ version: '2', sha256: CLS_SHA, state: 'loading', inputs: INPUTS, outputs: OUTPUTS })
    expect(modelIn(lastStatus(), 'cls-pub')).toMatchObject({
      name: 'cls-pub',
      version: '2',
      sha256: CLS_SHA,
      state: 'ready',
      inputs: INPUTS,
      outputs: OUTPUTS,
      maxBatch: 8,
      executionProvider: 'cpu',
    })
    expect(sha256Of(readFileSync(cachedModelPath(cacheDir, CLS_SHA)))).toBe(CLS_SHA)
    expect(edge.fileRequests.map((r) => r.model)).toEqual(['cls-pub@2', 'cls-bad@1'])
    expect(logs).toContain(`model cls-pub v2 ready (sha256 ${CLS_SHA.slice(0, 12)}…)`)
  })

  it('advertises a corrupted download as failed, says why, and never loads it', () => {
    // Advertised with the sha256 the edge listed (the file it tried to get), not the corrupt bytes'.
    expect(modelIn(lastStatus(), 'cls-bad')).toMatchObject({ version: '1', sha256: sha256Of(BAD), state: 'failed' })
    expect(logs.find((line) => line.startsWith('model cls-bad v1 failed:'))).toMatch(/downloaded file is corrupt: sha256 is [0-9a-f]{64}, expected/)
    expect(existsSync(cachedModelPath(cacheDir, sha256Of(BAD)))).toBe(false)
    expect(existsSync(`${cachedModelPath(cacheDir, sha256Of(BAD))}.part`)).toBe(false)
  })

  it('answers a job for the published model with exactly what onnxruntime computes, attested with its sha256', async () => {
    const values = Float32Array.from({ length: 3 * 48 * 96 }, (_, i) => Math.sin(i * 0.37) * 0.8)
    const input: RawTensor = { name: 'x', datatype: 'FP32', shape: [1, 3, 48, 96], data: bytesOf(values) }
    gateway.publish(deviceJobsTopic(DEVICE), jobFrame('published-1', PUBLISHED_CLS, [input]), { qos: 1 })
    const { header: result, tensors } = await waitFor('the result', async () => results.get(idOf('published-1')), 10_000, 5)
    expect(result.error).toBeUndefined()
    const session = await ort.InferenceSession.create(bundledModelPath('ppocr-cls'))
    const direct = await session.run({ x: new ort.Tensor('float32', values, [1, 3, 48, 96]) })
    await session.release()
    expect(tensors[0]).toMatchObject({ name: 'softmax_0.tmp_0', datatype: 'FP32', shape: [1, 2] })
    expect(Array.from(typedElements('FP32', tensors[0]!.data) as Float32Array)).toEqual(Array.from(direct['softmax_0.tmp_0']!.data as Float32Array))
    expect(attestationFromWire(result.attestation).attestation.modelHash).toBe(`0x${CLS_SHA}`)
  })

  it('batches a downloaded model\'s jobs only with those of the same caller (batchGroup)', async () => {
    const input: RawTensor = { name: 'x', datatype: 'FP32', shape: [1, 3, 48, 48], data: bytesOf(new Float32Array(3 * 48 * 48).fill(0.5)) }
    const job = (name: string, batchGroup: string) => jobFrame(name, PUBLISHED_CLS, [input], { batchGroup })
    // Four jobs in one message: they queue together, so only their groups keep them apart.
    gateway.publish(deviceJobsTopic(DEVICE), Buffer.from(joinFrames([job('alice-1', 'alice'), job('bob-1', 'bob'), job('alice-2', 'alice'), job('bob-2', 'bob')])), { qos: 1 })
    const batchJobs = async (name: string) => (await waitFor(`the result of ${name}`, async () => results.get(idOf(name)), 10_000, 5)).header.timings
    for (const name of ['alice-1', 'alice-2', 'bob-1', 'bob-2']) expect(await batchJobs(name)).toMatchObject({ batchJobs: 2 })
  })

  it('answers a job for the failed model as model_unavailable', async () => {
    const input: RawTensor = { name: 'x', datatype: 'FP32', shape: [1, 3, 48, 48], data: bytesOf(new Float32Array(3 * 48 * 48)) }
    gateway.publish(deviceJobsTopic(DEVICE), jobFrame('bad-1', { name: 'cls-bad', version: '1', sha256: sha256Of(BAD) }, [input]), { qos: 1 })
    const { header: result } = await waitFor('the result', async () => results.get(idOf('bad-1')), 10_000, 5)
    expect(result.error).toMatchObject({ code: 'model_unavailable' })
  })
})
