/**
 * Publishing a model with its int8 variant and serving it (issue 6), through the real parts: the
 * developer CLI quantizes with the agent's quantizer and publishes both files, the edge (workerd,
 * D1, R2) checks and records the variant, agents pick the file to run by their precision, and
 * the Gateway routes devices running either file of a version as one model while each
 * attestation must name the file that device runs, and only a file published for that version.
 */
import { createHash } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import mqtt from 'mqtt'
import * as ort from 'onnxruntime-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  ALL_DEVICE_STATUS,
  DeviceStatusSchema,
  gatewayClientId,
  recoverAttestationSigner,
  type DeviceStatus,
  type ModelDescriptor,
} from '@depinfer/shared'
import { bundledModelPath } from '../../device-agent/src/models/bundled.js'
import { quantizeModel } from '../../device-agent/src/quantize/index.js'
import { exampleInferRequest } from '../../scripts/local/example-input.js'
import { REPO_ROOT } from '../../scripts/local/paths.js'
import { startLocalNetwork, type LocalNetwork } from '../../scripts/local/network.js'
import { waitFor } from '../../scripts/local/wait-for.js'
import { classifierWithEmbeddingModel, tinyClassifierModel } from '../helpers/onnx-model.js'
import { startRogueDevice } from '../helpers/rogue-device.js'
import { answerAttestation, apiClient, outputByName, readyDevices, runDirect, waitForModelReady, type ApiClient, type ApiResponse } from './support.js'
import { runNode } from '../helpers/run-node.js'
import { temporaryDirectory } from '../helpers/temporary-directory.js'

const CLI = join(REPO_ROOT, 'cli', 'bin', 'depinfer.js')
const QUANTIZE = join(REPO_ROOT, 'device-agent', 'bin', 'depinfer-quantize.js')
const PAYOUT = '0x00000000000000000000000000000000000000aa'
const OUTPUT = 'softmax_0.tmp_0'
/** Without a chain configured, devices sign under chain 0 and the zero address (edge/src/env.ts). */
const DOMAIN = { chainId: 0n, verifyingContract: '0x0000000000000000000000000000000000000000' } as const
const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex')

const runCli = (args: string[], env: Record<string, string>, bin = CLI) => runNode(bin, args, env)

interface ListedVariant {
  kind: string
  sha256: string
  size: number
  report: { top1Agreement: number; classOutputs?: string[]; maxAbsError: number; samples: number }
  minAgreement: number
  accepted: boolean
}

describe('int8 variants of published models', () => {
  let network: LocalNetwork
  let api: ApiClient
  let env: Record<string, string>
  let observer: mqtt.MqttClient
  const statuses = new Map<string, DeviceStatus>()
  const clsPath = bundledModelPath('ppocr-cls')
  const clsBytes = readFileSync(clsPath)
  const clsSha = sha256(clsBytes)
  const dir = temporaryDirectory('depinfer-int8-')
  const int8Path = join(dir, 'cls-int8.onnx')
  let int8Sha = ''

  const agentEnv = (cache: string, extra: Record<string, string> = {}) => ({
    DEPINFER_EDGE_URL: network.edge.url,
    DEPINFER_API_KEY: network.apiKey,
    DEPINFER_MODEL_CACHE: join(dir, cache),
    ...extra,
  })
  const modelOn = (deviceId: string, name: string) => statuses.get(deviceId)?.models.find((m) => m.name === name)
  const publishWithVariant = (name: string, variant: Record<string, string>, body: Uint8Array = clsBytes): Promise<ApiResponse> =>
    api.post(`/api/models?${new URLSearchParams({ name, price_wei: '1000', payout_address: PAYOUT, ...variant })}`, body, { 'Content-Type': 'application/octet-stream' })
  const infer = async (path: string, seed: number) => {
    const request = exampleInferRequest(seed)
    const response = await api.post(path, request)
    expect(response.status, response.text).toBe(200)
    const input = request.inputs[0]!
    return { response, feeds: { x: new ort.Tensor('float32', Float32Array.from(input.data), input.shape) } }
  }
  const direct = async (path: string, feeds: Record<string, ort.Tensor>) => Array.from((await runDirect(path, feeds))[OUTPUT]!.data as Float32Array)

  beforeAll(async () => {
    network = await startLocalNetwork({ build: false, agents: [] })
    api = apiClient(network.edge.url, network.apiKey)
    env = { DEPINFER_URL: network.edge.url, DEPINFER_API_KEY: network.apiKey }
    // Plays a gateway on the broker to read what devices advertise.
    observer = await mqtt.connectAsync(network.broker.tcpUrl, { clientId: gatewayClientId('int8-observer') })
    observer.on('message', (_topic, payload) => {
      const status = DeviceStatusSchema.safeParse(JSON.parse(payload.toString()))
      if (status.success) statuses.set(status.data.deviceId, status.data)
    })
    await observer.subscribeAsync(ALL_DEVICE_STATUS, { qos: 1 })
  })
  afterAll(async () => {
    await observer?.endAsync()
    await network?.close()
  })

  it('publishes with --int8: the CLI quantizes with our quantizer, prints the report and uploads both files', async () => {
    const published = await runCli(['models', 'publish', clsPath, '--name', 'cls-int8', '--price-wei', '1000', '--payout-address', PAYOUT, '--int8'], env)
    expect(published.code, published.output).toBe(0)
    expect(published.output).toMatch(/agreement: {3}200 seeded samples/)
    expect(published.output).toMatch(/softmax_0\.tmp_0: top-1 \d+\.\d+% of 200 positions, max abs error/)
    expect(published.output).toMatch(/threshold: {3}top-1 ≥ 99\.00%: MET/)
    expect(published.output).toMatch(/published: cls-int8 version 1/)
    expect(published.output).toMatch(/int8 variant sha256 [0-9a-f]{64}, \d+ KiB: top-1 agreement \d+\.\d+% over 200 samples, .*devices run it/)

    const [model] = ((await api.get('/api/models?name=cls-int8')).body as { models: { sha256: string; variants: ListedVariant[] }[] }).models
    expect(model!.sha256).toBe(clsSha)
    expect(model!.variants).toHaveLength(1)
    const variant = model!.variants[0]!
    expect(variant).toMatchObject({ kind: 'int8', minAgreement: 0.99, accepted: true, report: { samples: 200 } })
    // Judged by default (on its only class output), so no int8_class_output was sent: an edge
    // older than that parameter takes this publish too.
    expect(variant.report).not.toHaveProperty('classOutputs')
    expect(variant.report.top1Agreement).toBeGreaterThanOrEqual(0.99)
    expect(variant.report.maxAbsError).toBeGreaterThan(0)
    int8Sha = variant.sha256

    // The variant's file is served like the model's (ETag = sha256, ranges), and it is exactly
    // what our quantizer makes of the model with its defaults.
    const file = await fetch(`${network.edge.url}/api/models/cls-int8/versions/1/variants/int8/file`, { headers: { Authorization: `Bearer ${network.apiKey}` } })
    expect(file.status).toBe(200)
    expect(file.headers.get('etag')).toBe(`"${int8Sha}"`)
    const int8Bytes = new Uint8Array(await file.arrayBuffer())
    expect(int8Bytes.byteLength).toBe(variant.size)
    expect(int8Bytes.byteLength).toBeLessThan(clsBytes.byteLength / 2)
    expect(sha256(int8Bytes)).toBe(int8Sha)
    expect(sha256((await quantizeModel(clsBytes)).bytes)).toBe(int8Sha)
    writeFileSync(int8Path, int8Bytes)
    const tail = await fetch(`${network.edge.url}/api/models/cls-int8/versions/1/variants/int8/file`, { headers: { Authorization: `Bearer ${network.apiKey}`, Range: 'bytes=1000-' } })
    expect(tail.status).toBe(206)
    expect(Buffer.from(await tail.arrayBuffer()).equals(Buffer.from(int8Bytes.subarray(1000)))).toBe(true)

    const listed = await runCli(['models', 'list', '--name', 'cls-int8'], env)
    expect(listed.output).toMatch(new RegExp(`int8\\t\\d+ KiB\\tsha256 ${int8Sha}\\ttop-1 agreement`))
    const none = await runCli(['models', 'list', '--name', 'cls-nope'], env)
    expect(none).toMatchObject({ code: 0, stdout: '', stderr: 'no published model named "cls-nope"\n' })
  })

  it('publishes a variant made elsewhere with the report depinfer-quantize printed for it', async () => {
    const elsewhere = join(dir, 'elsewhere-int8.onnx')
    const quantized = await runCli([clsPath, elsewhere, '--per-channel', '--samples', '40', '--no-bench', '--json'], {}, QUANTIZE)
    const reportPath = join(dir, 'elsewhere-report.json')
    writeFileSync(reportPath, quantized.output)
    const agreement = (JSON.parse(quantized.output) as { comparison: { top1Agreement: number } }).comparison.top1Agreement
    const published = await runCli(
      ['models', 'publish', clsPath, '--name', 'cls-elsewhere', '--price-wei', '0', '--payout-address', PAYOUT, '--int8-file', elsewhere, '--int8-report', reportPath, '--min-agreement', '0.9'],
      env,
    )
    expect(published.code, published.output).toBe(0)
    const [model] = ((await api.get('/api/models?name=cls-elsewhere')).body as { models: { variants: ListedVariant[] }[] }).models
    expect(model!.variants).toEqual([
      expect.objectContaining({ kind: 'int8', sha256: sha256(readFileSync(elsewhere)), report: expect.objectContaining({ top1Agreement: agreement, samples: 40 }), minAgreement: 0.9 }),
    ])
  })

  it('publishes with --int8 --class-output: judged on the named output, and the edge records which', async () => {
    // probs agrees with fp32 on every row, embedding's arg-max on about 1 row in 16 (the helper says why).
    const path = join(dir, 'embedding.onnx')
    writeFileSync(path, classifierWithEmbeddingModel())
    const published = await runCli(['models', 'publish', path, '--name', 'embedding-int8', '--price-wei', '0', '--payout-address', PAYOUT, '--int8', '--class-output', 'probs'], env)
    expect(published.code, published.output).toBe(0)
    expect(published.output).toMatch(/^judged on: {3}probs \(--class-output\)/m)
    expect(published.output).toMatch(/int8 variant sha256 [0-9a-f]{64}, .*: top-1 agreement 100\.00% on probs over 200 samples, .*devices run it/)
    const [model] = ((await api.get('/api/models?name=embedding-int8')).body as { models: { variants: ListedVariant[] }[] }).models
    expect(model!.variants).toEqual([expect.objectContaining({ accepted: true, report: expect.objectContaining({ top1Agreement: 1, classOutputs: ['probs'] }) })])
    expect((await runCli(['models', 'list', '--name', 'embedding-int8'], env)).output).toMatch(/\ttop-1 agreement 100\.00% on probs over 200 samples/)
  })

  it.each<[string, string, string, RegExp]>([
    ['an output the model does not have', 'int8_sha256=%s&int8_class_output=probs', 'int8_class_output', /^int8_class_output "probs" is not an output of the model \(its outputs: softmax_0\.tmp_0\)$/],
    ['class outputs without a variant', 'int8_class_output=softmax_0.tmp_0', 'int8_class_output', /^int8_class_output goes with an int8 variant/],
  ])('refuses a variant report naming %s', async (_case, query, field, detail) => {
    const variant = query.includes('int8_sha256') ? '&int8_top1_agreement=1&int8_max_abs_error=0&int8_samples=5&int8_min_agreement=0.9' : ''
    const path = `/api/models?name=cls-classout&price_wei=0&payout_address=${PAYOUT}&${query.replace('%s', int8Sha)}${variant}`
    const response = await api.post(path, clsBytes, { 'Content-Type': 'application/octet-stream' })
    expect(response.status, response.text).toBe(400)
    expect(response.body).toMatchObject({ field, detail: expect.stringMatching(detail) })
    expect((await api.get('/api/models?name=cls-classout')).body).toEqual({ models: [] })
  })

  it('records a variant whose report is below the threshold, as not accepted', async () => {
    const staged = await api.post('/api/models/files', new Uint8Array(readFileSync(int8Path)), { 'Content-Type': 'application/octet-stream' })
    expect(staged.status).toBe(200) // the CLI uploaded these very bytes already
    expect(staged.body).toMatchObject({ sha256: int8Sha })
    const low = await publishWithVariant('cls-low', {
      int8_sha256: int8Sha,
      int8_top1_agreement: '0.9',
      int8_max_abs_error: '0.5',
      int8_samples: '200',
      int8_min_agreement: '0.99',
    })
    expect(low.status, low.text).toBe(201)
    expect(low.body).toMatchObject({
      name: 'cls-low',
      version: '1',
      sha256: clsSha,
      variants: [{ kind: 'int8', sha256: int8Sha, report: { top1Agreement: 0.9, maxAbsError: 0.5, samples: 200 }, minAgreement: 0.99, accepted: false }],
    })
  })

  it.each<[string, Record<string, string>, string]>([
    ['a variant file never uploaded', { int8_sha256: 'ab'.repeat(32), int8_top1_agreement: '1', int8_max_abs_error: '0', int8_samples: '5', int8_min_agreement: '0.9' }, 'int8_sha256'],
    ['an agreement above 1', { int8_sha256: 'ab'.repeat(32), int8_top1_agreement: '1.5', int8_max_abs_error: '0', int8_samples: '5', int8_min_agreement: '0.9' }, 'int8_top1_agreement'],
    ['a sample count that is not a count', { int8_sha256: 'ab'.repeat(32), int8_top1_agreement: '1', int8_max_abs_error: '0', int8_samples: '2.5', int8_min_agreement: '0.9' }, 'int8_samples'],
    ['a variant without its threshold', { int8_sha256: 'ab'.repeat(32), int8_top1_agreement: '1', int8_max_abs_error: '0', int8_samples: '5' }, 'int8_min_agreement'],
  ])('refuses %s with 400 naming the field, and publishes nothing', async (_case, variant, field) => {
    const response = await publishWithVariant('cls-refused', variant)
    expect(response.status, response.text).toBe(400)
    expect(response.headers.get('content-type')).toMatch(/application\/problem\+json/)
    expect(response.body).toMatchObject({ field })
    expect((await api.get('/api/models?name=cls-refused')).body).toEqual({ models: [] })
  })

  it('refuses a variant whose inputs do not match the model, naming the field', async () => {
    const tiny = tinyClassifierModel().bytes
    const staged = await api.post('/api/models/files', tiny, { 'Content-Type': 'application/octet-stream' })
    expect(staged.status).toBe(201)
    expect(staged.body).toMatchObject({ sha256: sha256(tiny), inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 4] }] })
    const response = await publishWithVariant('cls-mismatch', {
      int8_sha256: sha256(tiny),
      int8_top1_agreement: '1',
      int8_max_abs_error: '0',
      int8_samples: '10',
      int8_min_agreement: '0.99',
    })
    expect(response.status).toBe(400)
    expect(response.body).toMatchObject({ field: 'int8.inputs[0].shape', detail: expect.stringMatching(/input x has shape \[-1,4\] but the model's has \[-1,3,-1,-1\]/) })
    expect((await api.get('/api/models?name=cls-mismatch')).body).toEqual({ models: [] })
    const notOnnx = await api.post('/api/models/files', 'not a model', { 'Content-Type': 'application/octet-stream' })
    expect(notOnnx.status).toBe(400)
    expect(notOnnx.body).toMatchObject({ field: 'body' })
    expect((await api.get('/api/models/cls-int8/versions/1/variants/fp16/file')).body).toMatchObject({ status: 404, field: 'kind' })
  })

  it('an agent with the default precision runs the accepted int8 file: its status, outputs and attestation say so', async () => {
    const agent = network.startAgent({ deviceId: 'int8-device', models: 'published:cls-int8@1,published:cls-low@1', env: agentEnv('cache-int8') })
    await waitFor('int8-device serving both models', async () =>
      modelOn('int8-device', 'cls-int8')?.state === 'ready' && modelOn('int8-device', 'cls-low')?.state === 'ready' ? true : undefined,
    60_000)
    // Advertised under the version's own sha256 (the model's identity), running the int8 file.
    expect(modelOn('int8-device', 'cls-int8')).toMatchObject({ version: '1', sha256: clsSha, runs: { variant: 'int8', sha256: int8Sha } })
    // The variant of cls-low misses its publisher's threshold: the fp32 file runs.
    expect(modelOn('int8-device', 'cls-low')).toMatchObject({ version: '1', sha256: clsSha, runs: { variant: 'fp32', sha256: clsSha } })
    await waitForModelReady(api, 'cls-int8')

    const { response, feeds } = await infer('/v2/models/cls-int8/versions/1/infer', 3)
    expect(response.body.parameters).toMatchObject({ device_id: 'int8-device', model_variant: 'int8', attestation_model_hash: `0x${int8Sha}` })
    const outputs = outputByName(response.body, OUTPUT).data
    expect(outputs).toEqual(await direct(int8Path, feeds))
    expect(outputs).not.toEqual(await direct(clsPath, feeds)) // it really was the int8 file
    // The attestation is the device's signature over the int8 file's hash.
    const { attestation, signature } = answerAttestation(response.body.parameters as Record<string, unknown>)
    expect(attestation.modelHash).toBe(`0x${int8Sha}`)
    expect(recoverAttestationSigner(DOMAIN, attestation, signature)).toBe(statuses.get('int8-device')!.address)

    const low = await infer('/v2/models/cls-low/versions/1/infer', 4)
    expect(low.response.body.parameters).toMatchObject({ device_id: 'int8-device', model_variant: 'fp32', attestation_model_hash: `0x${clsSha}` })
    expect(outputByName(low.response.body, OUTPUT).data).toEqual(await direct(clsPath, low.feeds))
    expect(agent.output()).toMatch(/model cls-int8 v1 ready \(int8 variant, sha256/)

    // A device with precision fp32 serves the same model: grouped with the int8 device under it.
    network.startAgent({ deviceId: 'fp32-device', models: 'published:cls-int8@1', env: agentEnv('cache-fp32', { DEPINFER_PRECISION: 'fp32' }) })
    await waitFor('both devices ready for cls-int8', async () => ((await readyDevices(api, 'cls-int8', '1')) === 2 ? true : undefined), 60_000)
    expect(modelOn('fp32-device', 'cls-int8')).toMatchObject({ sha256: clsSha, runs: { variant: 'fp32', sha256: clsSha } })
    await agent.stop()
  })

  it('an agent with precision fp32 runs the fp32 file', async () => {
    await waitFor('int8-device gone', async () => (statuses.get('int8-device')?.online === false ? true : undefined))
    const { response, feeds } = await infer('/v2/models/cls-int8/versions/1/infer', 5)
    expect(response.body.parameters).toMatchObject({ device_id: 'fp32-device', model_variant: 'fp32', attestation_model_hash: `0x${clsSha}` })
    expect(outputByName(response.body, OUTPUT).data).toEqual(await direct(clsPath, feeds))
  })

  it('gives no job to a device claiming an int8 file never published for that version', async () => {
    const descriptor = (await api.get('/v2/models/cls-int8/versions/1')).body as unknown as Pick<ModelDescriptor, 'inputs' | 'outputs'>
    const model = (version: string, runsSha: string): ModelDescriptor => ({
      name: 'cls-int8',
      version,
      sha256: clsSha,
      platform: 'onnxruntime_onnx',
      inputs: descriptor.inputs,
      outputs: descriptor.outputs,
      maxBatch: 1,
      state: 'ready',
      runs: { variant: 'int8', sha256: runsSha },
    })
    // Claims to be the fastest device, so the scheduler would pick it if it could.
    const rogue = await startRogueDevice({ brokerUrl: network.broker.tcpUrl, deviceId: 'rogue-int8', model: model('1', 'cd'.repeat(32)), mode: 'unpublished-file' })
    try {
      // The Gateway sees it online (the fp32 device and it)…
      await waitFor('the rogue device seen', async () => (((await api.get('/v2/health/ready')).body.devices_online as number) === 2 ? true : undefined))
      // …but does not count it as ready for the model, and sends it no job.
      expect(await readyDevices(api, 'cls-int8', '1')).toBe(1)
      for (let seed = 10; seed < 16; seed++) {
        const { response } = await infer('/v2/models/cls-int8/versions/1/infer', seed)
        expect(response.body.parameters).toMatchObject({ device_id: 'fp32-device', model_variant: 'fp32' })
      }
      expect(rogue.jobsReceived()).toBe(0)
    } finally {
      await rogue.close()
    }

    // The int8 file published for version 1 is not a file of version 2 (the same fp32 file
    // published again without a variant).
    const v2 = await publishWithVariant('cls-int8', {})
    expect(v2.body).toMatchObject({ version: '2', variants: [] })
    const borrower = await startRogueDevice({ brokerUrl: network.broker.tcpUrl, deviceId: 'rogue-borrower', model: model('2', int8Sha), mode: 'unpublished-file' })
    try {
      const listed = async () => ((await api.post('/v2/repository/index')).body as unknown as { name: string; version: string; state: string; reason: string }[]).find((e) => e.name === 'cls-int8' && e.version === '2')
      await waitFor('the borrowing device seen', async () => ((await listed())?.reason.startsWith('not routable') ? true : undefined))
      // Listed, but neither the index nor readiness claims a job could run: none would go to it.
      expect(await listed()).toMatchObject({ state: 'UNAVAILABLE', reason: expect.stringMatching(/^not routable: its devices run a file that is neither the version's own nor a variant accepted for it$/) })
      const ready = await api.get('/v2/models/cls-int8/versions/2/ready')
      expect(ready.status).toBe(400)
      expect(ready.body).toMatchObject({ ready: false, state: 'UNAVAILABLE' })
      expect(await readyDevices(api, 'cls-int8', '2')).toBe(0)
      const response = await api.post('/v2/models/cls-int8/versions/2/infer', exampleInferRequest(20))
      expect(response.status, response.text).toBe(503)
      expect(borrower.jobsReceived()).toBe(0)
    } finally {
      await borrower.close()
    }
  })
})
