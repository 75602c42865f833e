/**
 * Model publishing through the real edge (workerd, D1, R2): the developer CLI uploads an ONNX
 * file, the edge validates it and reads its inputs/outputs without onnxruntime, versions are
 * immutable, and devices can download the file with resumable ranges.
 */
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as ort from 'onnxruntime-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bundledModelPath } from '../../device-agent/src/models/bundled.js'
import { REPO_ROOT } from '../../scripts/local/paths.js'
import { startLocalNetwork, type LocalNetwork } from '../../scripts/local/network.js'
import { tinyClassifierModel } from '../helpers/onnx-model.js'
import { exampleInferRequest } from '../../scripts/local/example-input.js'
import { apiClient, outputByName, runDirect, waitForModelReady, type ApiClient } from './support.js'

const CLI = join(REPO_ROOT, 'cli', 'bin', 'depinfer.js')
const PAYOUT = '0x00000000000000000000000000000000000000aa'
const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex')

function runCli(args: string[], env: Record<string, string>): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => (output += chunk))
    child.stderr.on('data', (chunk: Buffer) => (output += chunk))
    child.once('exit', (code) => resolve({ code: code ?? -1, output }))
  })
}

describe('publishing models', () => {
  let network: LocalNetwork
  let api: ApiClient
  let env: Record<string, string>
  const clsPath = bundledModelPath('ppocr-cls')
  const clsBytes = readFileSync(clsPath)
  const dir = mkdtempSync(join(tmpdir(), 'depinfer-models-'))

  beforeAll(async () => {
    network = await startLocalNetwork({ build: false, agents: [] })
    api = apiClient(network.edge.url, network.apiKey)
    env = { DEPINFER_URL: network.edge.url, DEPINFER_API_KEY: network.apiKey }
  })
  afterAll(async () => {
    await network?.close()
  })

  it('publishes with the CLI; the edge reads the same inputs and outputs onnxruntime does', async () => {
    const published = await runCli(['models', 'publish', clsPath, '--name', 'text-direction', '--price-wei', '1000', '--payout-address', PAYOUT, '--description', 'PaddleOCR direction classifier'], env)
    expect(published.output).toMatch(/published: text-direction version 1/)
    expect(published.code).toBe(0)
    // The progress report reached the end: the whole file is reported sent.
    expect(published.output.match(/uploaded .+: ([\d.]+) MB in/)?.[1]).toBe((statSync(clsPath).size / 1e6).toFixed(1))

    const listed = await api.get('/api/models?name=text-direction')
    expect(listed.status).toBe(200)
    const [model] = (listed.body as { models: Record<string, unknown>[] }).models
    const session = await ort.InferenceSession.create(clsPath)
    expect(model).toMatchObject({
      name: 'text-direction',
      version: '1',
      sha256: sha256(clsBytes),
      size: clsBytes.byteLength,
      priceWei: '1000',
      payoutAddress: PAYOUT,
      description: 'PaddleOCR direction classifier',
      inputs: session.inputMetadata.map((m) => ({ name: m.name, datatype: 'FP32', shape: [-1, 3, -1, -1] })),
      outputs: session.outputMetadata.map((m) => ({ name: m.name, datatype: 'FP32', shape: [-1, 2] })),
    })
    await session.release()
  })

  it('keeps versions immutable: the same file again is the same version, a new file the next one', async () => {
    const again = await runCli(['models', 'publish', clsPath, '--name', 'text-direction', '--price-wei', '1000', '--payout-address', PAYOUT], env)
    expect(again.output).toMatch(/already published \(same file\): text-direction version 1/)
    const tinyPath = join(dir, 'tiny.onnx')
    writeFileSync(tinyPath, tinyClassifierModel().bytes)
    const next = await runCli(['models', 'publish', tinyPath, '--name', 'text-direction', '--price-wei', '5', '--payout-address', PAYOUT], env)
    expect(next.output).toMatch(/published: text-direction version 2/)
    const versions = ((await api.get('/api/models?name=text-direction')).body as { models: { version: string; sha256: string; priceWei: string }[] }).models
    expect(versions.map((v) => [v.version, v.priceWei])).toEqual([['1', '1000'], ['2', '5']])
    expect(versions[0]!.sha256).toBe(sha256(clsBytes)) // version 1 unchanged
    // The repository index lists published versions no device serves yet.
    const index = await api.post('/v2/repository/index', {})
    expect(JSON.parse(index.text)).toEqual(expect.arrayContaining([
      { name: 'text-direction', version: '2', state: 'UNAVAILABLE', reason: expect.stringMatching(/published/) },
    ]))
  })

  it('serves the file whole or from a byte offset, so downloads resume', async () => {
    const url = `${network.edge.url}/api/models/text-direction/versions/1/file`
    const auth = { Authorization: `Bearer ${network.apiKey}` }
    const whole = await fetch(url, { headers: auth })
    expect(whole.status).toBe(200)
    expect(whole.headers.get('etag')).toBe(`"${sha256(clsBytes)}"`)
    expect(whole.headers.get('accept-ranges')).toBe('bytes')
    expect(sha256(new Uint8Array(await whole.arrayBuffer()))).toBe(sha256(clsBytes))
    const tail = await fetch(url, { headers: { ...auth, Range: 'bytes=100000-' } })
    expect(tail.status).toBe(206)
    expect(tail.headers.get('content-range')).toBe(`bytes 100000-${clsBytes.byteLength - 1}/${clsBytes.byteLength}`)
    expect(Buffer.from(await tail.arrayBuffer()).equals(clsBytes.subarray(100000))).toBe(true)
    const beyond = await fetch(url, { headers: { ...auth, Range: `bytes=${clsBytes.byteLength}-` } })
    expect(beyond.status).toBe(416)
    await beyond.arrayBuffer()
    expect((await fetch(url)).status).toBe(401)
  })

  it.each<[string, string, unknown, string]>([
    ['a file that is not ONNX', '/api/models?name=bad&price_wei=1&payout_address=' + PAYOUT, 'just some text', 'body'],
    ['no name', '/api/models?price_wei=1&payout_address=' + PAYOUT, 'x', 'name'],
    ['a negative price', '/api/models?name=m&price_wei=-1&payout_address=' + PAYOUT, 'x', 'price_wei'],
    ['a bad payout address', '/api/models?name=m&price_wei=1&payout_address=0x12', 'x', 'payout_address'],
    ['an empty body', '/api/models?name=m&price_wei=1&payout_address=' + PAYOUT, '', 'body'],
  ])('refuses %s with 400 problem+json naming the field', async (_case, path, body, field) => {
    const response = await api.post(path, body, { 'Content-Type': 'application/octet-stream' })
    expect(response.status).toBe(400)
    expect(response.headers.get('content-type')).toMatch(/application\/problem\+json/)
    expect(response.body).toMatchObject({ field })
  })

  it('is served by a device that downloads it from the edge: outputs identical to onnxruntime run directly', async () => {
    const agent = network.startAgent({
      deviceId: 'publisher-fed-device',
      models: 'published:text-direction@1',
      env: { DEPINFER_EDGE_URL: network.edge.url, DEPINFER_API_KEY: network.apiKey, DEPINFER_MODEL_CACHE: join(dir, 'cache') },
    })
    await waitForModelReady(api, 'text-direction', 60_000)
    const meta = await api.get('/v2/models/text-direction/versions/1')
    expect(meta.body).toMatchObject({ sha256: sha256(clsBytes) })
    const request = exampleInferRequest(4)
    const response = await api.post('/v2/models/text-direction/versions/1/infer', request)
    expect(response.status, response.text).toBe(200)
    expect(response.body.parameters).toMatchObject({ device_id: 'publisher-fed-device', attestation_model_hash: `0x${sha256(clsBytes)}` })
    const input = request.inputs[0]!
    const direct = await runDirect(clsPath, { x: new ort.Tensor('float32', Float32Array.from(input.data), input.shape) })
    const expected = Array.from(direct['softmax_0.tmp_0']!.data as Float32Array)
    expect(outputByName(response.body, 'softmax_0.tmp_0').data).toEqual(expected)
    expect(agent.output()).toMatch(/100%|verified|downloaded/i)
    await agent.stop()
  })

  it('answers 404 for unknown models and versions, and the CLI reports errors plainly', async () => {
    expect((await api.get('/api/models/nope/versions/1/file')).body).toMatchObject({ status: 404, field: 'name' })
    expect((await api.get('/api/models/text-direction/versions/9')).body).toMatchObject({ status: 404, field: 'version' })
    const notOnnx = join(dir, 'notes.onnx')
    writeFileSync(notOnnx, 'hello')
    const failed = await runCli(['models', 'publish', notOnnx, '--name', 'x', '--price-wei', '1', '--payout-address', PAYOUT], env)
    expect(failed.code).toBe(1)
    expect(failed.output).toMatch(/publish failed \(400\): not a valid ONNX model/)
    const noKey = await runCli(['models', 'list'], { ...env, DEPINFER_API_KEY: '' })
    expect(noKey.code).toBe(2)
  })
})
