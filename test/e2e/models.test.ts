/**
 * Model publishing through the real edge (workerd, D1, R2): the developer CLI uploads an ONNX
 * file, the edge validates it and reads its inputs/outputs without onnxruntime, versions are
 * immutable, a name belongs to whoever first published it, and devices can download the file
 * with resumable ranges. The network publishes the bundled demo models as `npm start` does.
 */
import { createHash } from 'node:crypto'
import { readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import * as ort from 'onnxruntime-node'
import { privateKeyToAccount } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BUNDLED_MODEL_VERSION, BUNDLED_MODELS, bundledModelPath, type BundledModelName } from '../../device-agent/src/models/bundled.js'
import { ANVIL_DEV_PRIVATE_KEY } from '../../scripts/local/chain.js'
import { REPO_ROOT } from '../../scripts/local/paths.js'
import { startLocalNetwork, type LocalNetwork } from '../../scripts/local/network.js'
import { seededRandom } from '../../shared/src/seeded-random.js'
import { buildModel, rawData, tinyClassifierModel } from '../helpers/onnx-model.js'
import { exampleInferRequest } from '../../scripts/local/example-input.js'
import { waitFor } from '../../scripts/local/wait-for.js'
import { apiClient, outputByName, runDirect, waitForModelReady, type ApiClient } from './support.js'
import { runNode } from '../helpers/run-node.js'
import { temporaryDirectory } from '../helpers/temporary-directory.js'

const CLI = join(REPO_ROOT, 'cli', 'bin', 'depinfer.js')
const PAYOUT = '0x00000000000000000000000000000000000000aa'
/** What `npm start` publishes the demo models for: the local operator (anvil dev account #0). */
const OPERATOR = privateKeyToAccount(ANVIL_DEV_PRIVATE_KEY).address
const OCTETS = { 'Content-Type': 'application/octet-stream' }
const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex')

const runCli = (args: string[], env: Record<string, string>) => runNode(CLI, args, env)

/** The edge's limits in this network (the demo models, ppocr-rec 10.6 MB the largest, stay under MAX_MODEL_BYTES). */
const LARGE_MODEL_LIMITS = { maxModelBytes: 12 * 1024 * 1024, partBytes: 5 * 1024 * 1024, maxUploadBytes: 64 * 1024 * 1024 }

/** y = x·W with W [1024, 5000] FP32 of seeded values: 20.5 MB, mostly one initializer. */
function largeMatMulModel(): Uint8Array {
  const random = seededRandom(20_261_206)
  const weights = Float32Array.from({ length: 1024 * 5000 }, () => random() * 2 - 1)
  return buildModel({
    inputs: [{ name: 'x', datatype: 'FP32', shape: ['N', 1024] }],
    outputs: [{ name: 'y', datatype: 'FP32', shape: ['N', 5000] }],
    initializers: [{ name: 'W', datatype: 'FP32', dims: [1024, 5000], data: rawData(weights) }],
    nodes: [{ opType: 'MatMul', inputs: ['x', 'W'], outputs: ['y'] }],
  })
}

describe('publishing models', () => {
  let network: LocalNetwork
  let api: ApiClient
  /** Another developer's key, with the same label as the network's: labels do not identify keys. */
  let other: ApiClient
  let env: Record<string, string>
  const clsPath = bundledModelPath('ppocr-cls')
  const clsBytes = readFileSync(clsPath)
  const tinyBytes = tinyClassifierModel().bytes
  const dir = temporaryDirectory('depinfer-models-')
  const publish = (client: ApiClient, query: Record<string, string>, bytes: Uint8Array) =>
    client.post(`/api/models?${new URLSearchParams(query)}`, bytes, OCTETS)

  beforeAll(async () => {
    network = await startLocalNetwork({
      build: false,
      agents: [],
      publishBundledModels: { payoutAddress: OPERATOR },
      // Small limits, so a ~20 MB model is "large": over what one request may carry, in 5 MiB parts.
      edgeVars: { MAX_MODEL_BYTES: String(LARGE_MODEL_LIMITS.maxModelBytes), UPLOAD_PART_BYTES: String(LARGE_MODEL_LIMITS.partBytes), MAX_UPLOAD_BYTES: String(LARGE_MODEL_LIMITS.maxUploadBytes) },
    })
    api = apiClient(network.edge.url, network.apiKey)
    other = apiClient(network.edge.url, await network.edge.createApiKey('local'))
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
    const again = await runCli(['models', 'publish', clsPath, '--name', 'text-direction', '--price-wei', '1000', '--payout-address', PAYOUT, '--description', 'PaddleOCR direction classifier'], env)
    expect(again.output).toMatch(/already published \(same file, same terms\): text-direction version 1/)
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
    const unsatisfiable = await fetch(url, { headers: { ...auth, Range: 'bytes=99999999-' } })
    expect(unsatisfiable.status).toBe(416)
    expect(unsatisfiable.headers.get('content-range')).toBe(`bytes */${clsBytes.byteLength}`)
    expect(unsatisfiable.headers.get('content-type')).toMatch(/application\/problem\+json/)
    expect(await unsatisfiable.json()).toMatchObject({ status: 416, field: 'Range', detail: expect.stringMatching(/bytes=99999999-/) })
    expect((await fetch(url)).status).toBe(401)
  })

  it('gives a name to whoever first published it: another key gets 403 naming `name`, the owner publishes on', async () => {
    const owner = `key:${sha256(new TextEncoder().encode(network.apiKey))}`
    const listed = async () => ((await api.get('/api/models?name=text-direction')).body as { models: { version: string; sha256: string; payoutAddress: string; owner: string }[] }).models
    const before = await listed()
    expect(before.map((v) => v.owner)).toEqual([owner, owner])

    const hijack = await publish(other, { name: 'text-direction', price_wei: '1', payout_address: '0x00000000000000000000000000000000000000bb' }, tinyBytes)
    expect(hijack.status, hijack.text).toBe(403)
    expect(hijack.headers.get('content-type')).toMatch(/application\/problem\+json/)
    expect(hijack.body).toMatchObject({ status: 403, field: 'name', detail: expect.stringContaining(owner) })
    // Not even the owner's latest file under the owner's very terms (the owner's idempotent retry).
    expect((await publish(other, { name: 'text-direction', price_wei: '5', payout_address: PAYOUT }, tinyBytes)).status).toBe(403)
    // Nor a look-alike: the name in other letter case is the owner's too.
    const lookalike = await publish(other, { name: 'Text-Direction', price_wei: '1', payout_address: PAYOUT }, tinyBytes)
    expect(lookalike.body).toMatchObject({ status: 403, field: 'name', detail: expect.stringContaining('differs only in letter case from text-direction') })
    expect(((await api.get('/api/models?name=Text-Direction')).body as { models: unknown[] }).models).toEqual([])
    expect(await listed()).toEqual(before)

    // Two keys claiming two case variants of a new name at the same moment: one gets it, the
    // other a 403 naming the look-alike (both used to pass the check in ~1 of 4 rounds).
    for (let round = 0; round < 8; round++) {
      const claims = await Promise.all([
        publish(api, { name: `Race-${round}`, price_wei: '1', payout_address: PAYOUT }, tinyBytes),
        publish(other, { name: `race-${round}`, price_wei: '1', payout_address: PAYOUT }, tinyBytes),
      ])
      const statuses = claims.map((c) => c.status)
      expect(statuses.sort(), claims.map((c) => c.text).join('\n')).toEqual([201, 403])
      expect(claims.find((c) => c.status === 403)!.body).toMatchObject({ field: 'name', detail: expect.stringContaining('differs only in letter case') })
    }

    // The other key owns what it publishes first, and the owner cannot take that either.
    expect((await publish(other, { name: 'others-model', price_wei: '1', payout_address: PAYOUT }, tinyBytes)).status).toBe(201)
    expect((await publish(api, { name: 'others-model', price_wei: '2', payout_address: PAYOUT }, tinyBytes)).body).toMatchObject({ status: 403, field: 'name' })
    expect((await publish(api, { name: 'OTHERS-MODEL', price_wei: '2', payout_address: PAYOUT }, tinyBytes)).body).toMatchObject({ status: 403, field: 'name' })

    const next = await publish(api, { name: 'text-direction', price_wei: '7', payout_address: PAYOUT }, tinyBytes)
    expect(next.status, next.text).toBe(201)
    expect(next.body).toMatchObject({ version: '3', priceWei: '7', owner })
  })

  it('answers an upload refused before it is read (wrong key, owned name) with its problem, not a connection reset', async () => {
    // 24 MB: far more than the runtime buffers, so an answer sent without reading it would reset
    // the connection while the client is still sending.
    const big = new Uint8Array(24 * 1024 * 1024)
    const stranger = apiClient(network.edge.url, await network.edge.createApiKey('big-uploader'))
    for (let i = 0; i < 3; i++) {
      expect((await publish(stranger, { name: 'ppocr-det', price_wei: '1', payout_address: PAYOUT }, big)).body).toMatchObject({ status: 403, field: 'name' })
      expect((await publish(apiClient(network.edge.url, 'dpi_not-a-key'), { name: 'anything', price_wei: '1', payout_address: PAYOUT }, big)).body).toMatchObject({ status: 401 })
    }
  })

  it('gives a name published by a key with a payer to that account: its other keys publish on, other accounts get 403', async () => {
    const payer = '0x00000000000000000000000000000000000000Cc'
    const first = apiClient(network.edge.url, await network.edge.createApiKey('dev-a', undefined, payer))
    const rotated = apiClient(network.edge.url, await network.edge.createApiKey('dev-a-new', undefined, payer))
    const stranger = apiClient(network.edge.url, await network.edge.createApiKey('dev-a', undefined, '0x00000000000000000000000000000000000000dd'))
    expect((await publish(first, { name: 'account-model', price_wei: '1', payout_address: PAYOUT }, tinyBytes)).body).toMatchObject({ version: '1', owner: `account:${payer.toLowerCase()}` })
    expect((await publish(stranger, { name: 'account-model', price_wei: '1', payout_address: PAYOUT }, clsBytes)).body).toMatchObject({ status: 403, field: 'name' })
    expect((await publish(rotated, { name: 'account-model', price_wei: '1', payout_address: PAYOUT }, clsBytes)).body).toMatchObject({ version: '2' })
  })

  it('lets the operator\'s keys with the label publish a name the migration could only give to a label (0006_model_owners.sql)', async () => {
    const db = await network.edge.miniflare.getD1Database('DB')
    await db.prepare("INSERT INTO model_owners (name, owner, claimed_at) VALUES ('legacy-model', 'label:local', 0)").run()
    const stranger = apiClient(network.edge.url, await network.edge.createApiKey('someone-else'))
    expect((await publish(stranger, { name: 'legacy-model', price_wei: '1', payout_address: PAYOUT }, tinyBytes)).body).toMatchObject({ status: 403, field: 'name' })
    expect((await publish(api, { name: 'legacy-model', price_wei: '1', payout_address: PAYOUT }, tinyBytes)).body).toMatchObject({ version: '1', owner: 'label:local' })
    expect((await publish(other, { name: 'legacy-model', price_wei: '2', payout_address: PAYOUT }, tinyBytes)).body).toMatchObject({ version: '2', owner: 'label:local' })
    // A key anyone can make through the edge, with the same label, is not the operator's.
    const made = await api.post('/api/keys', { label: 'local', payer: null })
    expect(made.status, made.text).toBe(201)
    const selfMade = apiClient(network.edge.url, made.body.key as string)
    expect((await publish(selfMade, { name: 'legacy-model', price_wei: '3', payout_address: PAYOUT }, tinyBytes)).body).toMatchObject({ status: 403, field: 'name' })
  })

  it('makes the same file with other terms a new version; the same file with the same terms is the same version', async () => {
    const terms = { name: 'terms', price_wei: '5', payout_address: PAYOUT, description: 'tiny' }
    const first = await publish(api, terms, tinyBytes)
    expect([first.status, first.body.version, first.body.priceWei]).toEqual([201, '1', '5'])
    const retried = await publish(api, terms, tinyBytes)
    expect([retried.status, retried.body.version]).toEqual([200, '1'])

    const repriced = await publish(api, { ...terms, price_wei: '6' }, tinyBytes)
    expect([repriced.status, repriced.body.version, repriced.body.priceWei, repriced.body.sha256]).toEqual([201, '2', '6', sha256(tinyBytes)])
    expect((await publish(api, { ...terms, price_wei: '6' }, tinyBytes)).status).toBe(200)
    // The payout address compares as an address (case aside), the description as it is.
    const moved = await publish(api, { ...terms, price_wei: '6', payout_address: '0x00000000000000000000000000000000000000AB' }, tinyBytes)
    expect([moved.status, moved.body.version, moved.body.payoutAddress]).toEqual([201, '3', '0x00000000000000000000000000000000000000ab'])
    expect((await publish(api, { ...terms, price_wei: '6', payout_address: '0x00000000000000000000000000000000000000ab' }, tinyBytes)).status).toBe(200)
    const described = await publish(api, { ...terms, price_wei: '6', payout_address: '0x00000000000000000000000000000000000000ab', description: 'tinier' }, tinyBytes)
    expect([described.status, described.body.version]).toEqual([201, '4'])

    const versions = ((await api.get('/api/models?name=terms')).body as { models: { version: string; priceWei: string }[] }).models
    expect(versions.map((v) => [v.version, v.priceWei])).toEqual([['1', '5'], ['2', '6'], ['3', '6'], ['4', '6']])
  })

  it('publishes the bundled demo models as npm start does: version and file the agent serves, free, owned by the network key', async () => {
    const owner = `key:${sha256(new TextEncoder().encode(network.apiKey))}`
    for (const name of Object.keys(BUNDLED_MODELS) as BundledModelName[]) {
      const versions = ((await api.get(`/api/models?name=${name}`)).body as { models: Record<string, unknown>[] }).models
      expect(versions).toEqual([
        expect.objectContaining({ name, version: BUNDLED_MODEL_VERSION, sha256: sha256(readFileSync(bundledModelPath(name))), priceWei: '0', payoutAddress: OPERATOR.toLowerCase(), owner }),
      ])
    }
    const squat = await publish(other, { name: 'ppocr-det', price_wei: '1000', payout_address: '0x00000000000000000000000000000000000000bb' }, tinyBytes)
    expect(squat.status, squat.text).toBe(403)
    expect(squat.body).toMatchObject({ field: 'name' })
    expect(((await api.get('/api/models?name=ppocr-det')).body as { models: unknown[] }).models).toHaveLength(1)
    // A misspelt filter would list every model as if all matched it.
    expect((await api.get('/api/models?nmae=ppocr-det')).body).toMatchObject({ status: 400, field: 'nmae' })
  })

  it.each<[string, string, unknown, string]>([
    ['a file that is not ONNX', '/api/models?name=bad&price_wei=1&payout_address=' + PAYOUT, 'just some text', 'body'],
    ['no name', '/api/models?price_wei=1&payout_address=' + PAYOUT, 'x', 'name'],
    ['a negative price', '/api/models?name=m&price_wei=-1&payout_address=' + PAYOUT, 'x', 'price_wei'],
    ['a bad payout address', '/api/models?name=m&price_wei=1&payout_address=0x12', 'x', 'payout_address'],
    ['a checksummed payout address with a typo', '/api/models?name=m&price_wei=1&payout_address=0x90F79bf6EB2c4f870365E785982E1f101E93b907', 'x', 'payout_address'],
    ['the zero payout address (earnings burned)', '/api/models?name=m&price_wei=1&payout_address=0x0000000000000000000000000000000000000000', 'x', 'payout_address'],
    ['an empty body', '/api/models?name=m&price_wei=1&payout_address=' + PAYOUT, '', 'body'],
    ['a misspelt parameter', '/api/models?name=m&price_wei=1&desciption=mine&payout_address=' + PAYOUT, 'x', 'desciption'],
    ['a parameter given twice', '/api/models?name=m&price_wei=1&name=n&payout_address=' + PAYOUT, 'x', 'name'],
  ])('refuses %s with 400 problem+json naming the field', async (_case, path, body, field) => {
    const response = await api.post(path, body, { 'Content-Type': 'application/octet-stream' })
    expect(response.status).toBe(400)
    expect(response.headers.get('content-type')).toMatch(/application\/problem\+json/)
    expect(response.body).toMatchObject({ field })
  })

  it('is served by a device that downloads it from the edge: outputs identical to onnxruntime run directly', async () => {
    // A model from a newer ONNX than the devices' onnxruntime reads: published (the edge cannot
    // know every device's onnxruntime), and its callers are told why no device serves it.
    const futureIr = buildModel({
      inputs: [{ name: 'x', datatype: 'FP32', shape: ['N', 4] }],
      outputs: [{ name: 'y', datatype: 'FP32', shape: ['N', 4] }],
      nodes: [{ opType: 'Relu', inputs: ['x'], outputs: ['y'] }],
      irVersion: 99,
    })
    expect((await publish(api, { name: 'future-ir', price_wei: '0', payout_address: PAYOUT }, futureIr)).status).toBe(201)
    const agent = network.startAgent({
      deviceId: 'publisher-fed-device',
      // And a bundled model, published by the network: routed only if the published version and
      // file are the ones the agent serves.
      models: 'published:text-direction@1,published:future-ir,ppocr-cls',
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

    const index = async () => ((await api.post('/v2/repository/index', {})).body as unknown as { name: string; state: string; reason: string }[]).find((m) => m.name === 'future-ir')
    await waitFor('the device to report future-ir failed', async () => ((await index())?.reason.includes('publisher-fed-device') ? true : undefined), 30_000)
    expect(await index()).toMatchObject({ state: 'UNAVAILABLE', reason: expect.stringMatching(/^failed to load on publisher-fed-device \(.*IR version/i) })
    const refused = await api.post('/v2/models/future-ir/infer', { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] })
    expect(refused.status).toBe(503)
    expect(refused.body).toMatchObject({ detail: expect.stringMatching(/no online device serves model future-ir version 1: failed to load on publisher-fed-device \(.*IR version/i) })
    // Not a 2-second wait: the load failure lasts until a provider changes something.
    expect(refused.headers.get('retry-after')).toBe('300')

    await waitForModelReady(api, 'ppocr-cls', 60_000)
    const demo = await api.post('/v2/models/ppocr-cls/infer', request)
    expect(demo.status, demo.text).toBe(200)
    expect(demo.body).toMatchObject({ model_version: BUNDLED_MODEL_VERSION, parameters: { device_id: 'publisher-fed-device', attestation_model_hash: `0x${sha256(clsBytes)}` } })
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

  it('deletes uploaded files no version names a week after their upload, and keeps published ones', async () => {
    const relu = (graphName: string) =>
      buildModel({
        graphName,
        inputs: [{ name: 'x', datatype: 'FP32', shape: ['N', 4] }],
        outputs: [{ name: 'y', datatype: 'FP32', shape: ['N', 4] }],
        nodes: [{ opType: 'Relu', inputs: ['x'], outputs: ['y'] }],
      })
    const orphan = relu('never-published')
    const staged = await api.post('/api/models/files', orphan, { 'Content-Type': 'application/octet-stream' })
    expect(staged.status, staged.text).toBe(201)
    const kept = relu('published-file')
    expect((await publish(api, { name: 'kept-file', price_wei: '0', payout_address: PAYOUT }, kept)).status).toBe(201)
    const publishStaged = () => publish(api, { name: 'from-staged', price_wei: '0', payout_address: PAYOUT, sha256: staged.body.sha256 as string }, new Uint8Array(0))

    // Held for a week: beginning an upload of it answers that the edge holds it.
    const held = () => api.post(`/api/models/uploads?sha256=${staged.body.sha256 as string}&size=${orphan.byteLength}`)
    await network.edge.runScheduled(new Date(Date.now() + 6 * 24 * 3600 * 1000))
    expect((await held()).body).toMatchObject({ state: 'stored' })
    await network.edge.runScheduled(new Date(Date.now() + 8 * 24 * 3600 * 1000))
    expect((await publishStaged()).body).toMatchObject({ status: 400, field: 'sha256', detail: expect.stringMatching(/^no uploaded file has sha256/) })
    const file = await fetch(`${network.edge.url}/api/models/kept-file/versions/1/file`, { headers: { Authorization: `Bearer ${network.apiKey}` } })
    expect(file.status).toBe(200)
    expect(Buffer.from(await file.arrayBuffer()).equals(Buffer.from(kept))).toBe(true)
  })

  describe('a model file too large for one request', () => {
    const large = largeMatMulModel()
    const largePath = join(dir, 'large-matmul.onnx')
    const largeSha = sha256(large)
    const partCount = Math.ceil(large.length / LARGE_MODEL_LIMITS.partBytes)
    const part = (n: number, bytes = large) => bytes.subarray((n - 1) * LARGE_MODEL_LIMITS.partBytes, n * LARGE_MODEL_LIMITS.partBytes)
    const begin = (client: ApiClient, query: Record<string, string>) => client.post(`/api/models/uploads?${new URLSearchParams(query)}`)
    const putPart = (client: ApiClient, id: string, n: number | string, bytes: Uint8Array) => client.request('PUT', `/api/models/uploads/${id}/parts/${n}`, bytes, OCTETS)
    const staged = async () => (await (await network.edge.miniflare.getR2Bucket('MODELS')).list({ prefix: 'uploads/' })).objects.length

    beforeAll(() => writeFileSync(largePath, large))

    it('goes up in parts; the CLI resumes an interrupted upload, and a device serves the model: outputs identical to onnxruntime run directly', async () => {
      expect(large.length).toBeGreaterThan(LARGE_MODEL_LIMITS.maxModelBytes)
      const whole = await publish(api, { name: 'large-matmul', price_wei: '0', payout_address: PAYOUT }, large)
      expect(whole.body).toMatchObject({ status: 413, field: 'body' })

      // An upload cut off after two of its parts, as a crashed or disconnected CLI leaves it.
      const begun = await begin(api, { sha256: largeSha, size: String(large.length) })
      expect(begun.status, begun.text).toBe(201)
      expect(begun.body).toMatchObject({ state: 'open', sha256: largeSha, size: large.length, partBytes: LARGE_MODEL_LIMITS.partBytes, partCount, receivedParts: [], resumed: false })
      const id = begun.body.id as string
      for (const n of [1, 3]) expect((await putPart(api, id, n, part(n))).body).toMatchObject({ receivedParts: n === 1 ? [1] : [1, 3] })

      const published = await runCli(['models', 'publish', largePath, '--name', 'large-matmul', '--price-wei', '0', '--payout-address', PAYOUT], env)
      expect(published.output).toContain(`resuming the upload of ${largePath}: the edge holds 2 of its ${partCount} parts`)
      expect(published.code, published.output).toBe(0)
      expect(published.output).toMatch(/published: large-matmul version 1, sha256 [0-9a-f]{64}/)
      expect(published.output).toContain('input  x FP32 [-1,1024]')
      expect((await api.get('/api/models/large-matmul/versions/1')).body).toMatchObject({ sha256: largeSha, size: large.length })
      // Its parts and staging object are gone once the file is stored; a completion retried
      // (its answer lost) answers the file, and no more parts are taken.
      expect((await api.get(`/api/models/uploads/${id}`)).body).toMatchObject({ state: 'complete', sha256: largeSha })
      expect(await staged()).toBe(0)
      const again = await api.post(`/api/models/uploads/${id}/complete`)
      expect(again.status).toBe(200)
      expect(again.body).toMatchObject({ sha256: largeSha, size: large.length })
      expect((await putPart(api, id, 1, part(1))).body).toMatchObject({ status: 409, field: 'id' })
      // Stored: another upload of the same file sends nothing.
      expect((await begin(api, { sha256: largeSha, size: String(large.length) })).body).toMatchObject({ state: 'stored', file: { sha256: largeSha, size: large.length } })
      const copy = await runCli(['models', 'publish', largePath, '--name', 'large-matmul-copy', '--price-wei', '0', '--payout-address', PAYOUT], env)
      expect(copy.code, copy.output).toBe(0)
      expect(copy.output).toContain(`the edge holds ${largePath} already: nothing to upload`)
      expect(copy.output).not.toMatch(/MB\/s/)

      const agent = network.startAgent({
        deviceId: 'large-model-device',
        models: 'published:large-matmul',
        env: { DEPINFER_EDGE_URL: network.edge.url, DEPINFER_API_KEY: network.apiKey, DEPINFER_MODEL_CACHE: join(dir, 'large-cache') },
      })
      try {
        await waitForModelReady(api, 'large-matmul', 60_000)
        const random = seededRandom(7)
        const x = Array.from({ length: 2 * 1024 }, () => random() - 0.5)
        const response = await api.post('/v2/models/large-matmul/infer', { inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 1024], data: x }] })
        expect(response.status, response.text).toBe(200)
        const direct = await runDirect(largePath, { x: new ort.Tensor('float32', Float32Array.from(x), [2, 1024]) })
        expect(outputByName(response.body, 'y').data).toEqual(Array.from(direct.y!.data as Float32Array))
      } finally {
        await agent.stop()
      }
    })

    it('refuses what it cannot take with a problem naming the field, and keeps nothing of a file that is not the declared one or not ONNX', async () => {
      // Beginning: the sha256, the size and, optionally, the name the file is for, within the limit.
      expect((await begin(api, { sha256: 'abc', size: '10' })).body).toMatchObject({ status: 400, field: 'sha256' })
      expect((await begin(api, { sha256: largeSha })).body).toMatchObject({ status: 400, field: 'size' })
      expect((await begin(api, { sha256: largeSha, size: '10', name: 'no spaces' })).body).toMatchObject({ status: 400, field: 'name' })
      // A name another publisher owns is refused before any part is sent.
      expect((await begin(other, { sha256: '7'.repeat(64), size: String(large.length), name: 'text-direction' })).body).toMatchObject({
        status: 403,
        field: 'name',
        detail: expect.stringContaining('belongs to'),
      })
      expect(((await other.get('/api/models/uploads')).body.uploads as unknown[]).length).toBe(0)
      expect((await begin(api, { sha256: '0'.repeat(64), size: String(LARGE_MODEL_LIMITS.maxUploadBytes + 1) })).body).toMatchObject({ status: 413, field: 'size' })

      // Bytes other than the declared ones: refused at completion, the upload discarded.
      const garbage = Uint8Array.from(large, (b, i) => (i === 1_000 ? b ^ 1 : b))
      const wrong = await begin(api, { sha256: largeSha.replace(/^./, (c) => (c === '0' ? '1' : '0')), size: String(large.length) })
      const wrongId = wrong.body.id as string
      expect((await putPart(api, wrongId, 0, part(1))).body).toMatchObject({ status: 400, field: 'part' })
      expect((await putPart(api, wrongId, partCount + 1, part(1))).body).toMatchObject({ status: 400, field: 'part' })
      expect((await putPart(api, wrongId, partCount, part(1))).body).toMatchObject({ status: 413, field: 'body', detail: `part ${partCount} must be exactly ${large.length - (partCount - 1) * LARGE_MODEL_LIMITS.partBytes} bytes, got more` })
      expect((await putPart(api, wrongId, 1, part(1).subarray(1))).body).toMatchObject({ status: 400, field: 'body', detail: `part 1 must be exactly ${LARGE_MODEL_LIMITS.partBytes} bytes, got ${LARGE_MODEL_LIMITS.partBytes - 1}` })
      expect((await api.post(`/api/models/uploads/${wrongId}/complete`)).body).toMatchObject({ status: 409, field: 'parts', detail: `part(s) ${Array.from({ length: partCount }, (_, i) => i + 1).join(', ')} of ${partCount} not received yet` })
      // Another key sees none of it.
      for (const response of [await other.get(`/api/models/uploads/${wrongId}`), await putPart(other, wrongId, 1, part(1)), await other.post(`/api/models/uploads/${wrongId}/complete`), await other.request('DELETE', `/api/models/uploads/${wrongId}`)]) {
        expect(response.body).toMatchObject({ status: 404, field: 'id' })
      }
      for (let n = 1; n <= partCount; n++) expect((await putPart(api, wrongId, n, part(n, garbage))).status).toBe(200)
      const mismatch = await api.post(`/api/models/uploads/${wrongId}/complete`)
      expect(mismatch.body).toMatchObject({ status: 400, field: 'sha256', detail: expect.stringContaining(`sha256 is ${sha256(garbage)}, not`) })
      expect((await api.get(`/api/models/uploads/${wrongId}`)).status).toBe(404)

      // The declared bytes, but not an ONNX model: refused, discarded, and never publishable.
      const notOnnx = new Uint8Array(LARGE_MODEL_LIMITS.partBytes + 10).fill(0xff)
      const notOnnxSha = sha256(notOnnx)
      const plain = await begin(api, { sha256: notOnnxSha, size: String(notOnnx.length) })
      const plainId = plain.body.id as string
      for (const n of [1, 2]) expect((await putPart(api, plainId, n, part(n, notOnnx))).status).toBe(200)
      expect((await api.post(`/api/models/uploads/${plainId}/complete`)).body).toMatchObject({ status: 400, field: 'body', detail: expect.stringMatching(/^not a valid ONNX model: .*; the upload is discarded$/) })
      expect((await publish(api, { name: 'never', price_wei: '0', payout_address: PAYOUT, sha256: notOnnxSha }, new Uint8Array(0))).body).toMatchObject({ status: 400, field: 'sha256', detail: expect.stringMatching(/^no uploaded file has sha256/) })
      // A publish names a stored file or sends one, not both.
      expect((await publish(api, { name: 'large-matmul', price_wei: '0', payout_address: PAYOUT, sha256: largeSha }, tinyBytes)).body).toMatchObject({ status: 400, field: 'sha256' })
      expect(await staged()).toBe(0)

      // Open uploads per key are bounded; DELETE frees one, and a day-old one expires.
      const ids: string[] = []
      for (let i = 0; i < 4; i++) {
        const opened = await begin(other, { sha256: `${i}`.repeat(64), size: String(large.length) })
        expect(opened.status, opened.text).toBe(201)
        ids.push(opened.body.id as string)
      }
      expect((await begin(other, { sha256: '9'.repeat(64), size: String(large.length) })).body).toMatchObject({ status: 409, field: 'uploads', detail: expect.stringMatching(/^this API key has 4 uploads open .*GET \/api\/models\/uploads lists them/) })
      expect(((await other.get('/api/models/uploads')).body.uploads as { id: string }[]).map((u) => u.id)).toEqual(ids)
      // Beginning the same file again resumes its upload instead of opening another.
      expect((await begin(other, { sha256: '0'.repeat(64), size: String(large.length) })).body).toMatchObject({ id: ids[0], resumed: true })
      expect((await other.request('DELETE', `/api/models/uploads/${ids[0]}`)).status).toBe(204)
      expect((await other.get(`/api/models/uploads/${ids[0]}`)).status).toBe(404)
      expect((await other.get(`/api/models/uploads/${ids[1]}`)).status).toBe(200)
      await network.edge.runScheduled(new Date(Date.now() + 25 * 3600 * 1000))
      for (const id of ids.slice(1)) expect((await other.get(`/api/models/uploads/${id}`)).status).toBe(404)

      // Begins at once: the limit holds, and one file gets one upload.
      const first = await begin(other, { sha256: 'a'.repeat(64), size: String(large.length) })
      const racing = await Promise.all(['a', 'b', 'c', 'd', 'e', 'f', 'a'].map((digit) => begin(other, { sha256: digit.repeat(64), size: String(large.length) })))
      expect(racing.map((r) => r.status).sort()).toEqual([200, 200, 201, 201, 201, 409, 409])
      expect(racing.filter((r) => r.body.sha256 === 'a'.repeat(64)).map((r) => r.body.id)).toEqual([first.body.id, first.body.id])
      expect((await other.get('/api/models/uploads')).body.uploads).toHaveLength(4)
      await Promise.all(((await other.get('/api/models/uploads')).body.uploads as { id: string }[]).map((u) => other.request('DELETE', `/api/models/uploads/${u.id}`)))
    })
  })
})
