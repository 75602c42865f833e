/**
 * Jobs that a device runs in one batch are attested with one signature (shared
 * `signAttestations`): each answer's `attestation_signature` is the device's EIP-712 signature
 * of `AttestationBatch(root)` followed by the job's Merkle proof. A caller checks it with viem
 * and a few lines of keccak (the typed data comes from shared, whose unit tests pin it to one
 * written out by hand); the edge accepted every one of them.
 */
import { execFile } from 'node:child_process'
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { promisify } from 'node:util'
import * as ort from 'onnxruntime-node'
import { concat, hashStruct, keccak256, recoverTypedDataAddress, type Hex } from 'viem'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bundledModelPath } from '../../device-agent/src/models/bundled.js'
import { loadDeviceKey } from '../../device-agent/src/keys/device-key.js'
import { localDeviceKeyPath } from '../../scripts/local/agent-process.js'
import { EXAMPLE_SHAPE, exampleInferRequest, exampleTextLine } from '../../scripts/local/example-input.js'
import { startLocalNetwork, type LocalNetwork } from '../../scripts/local/network.js'
import { ATTESTATION_TYPES, attestationBatchTypedData } from '../../shared/src/index.js'
import { answerAttestation, apiClient, outputByName, runDirect, waitForModelReady, type ApiClient } from './support.js'
import { temporaryDirectory } from '../helpers/temporary-directory.js'

const DEVICE = 'batch-signing-device'
const JOBS = 4
const dir = temporaryDirectory('depinfer-batch-sign-')
const configPath = join(dir, 'agent.json')
// The first job waits up to 1 s for company, so the concurrent jobs below share one run.
writeFileSync(configPath, JSON.stringify({ batching: { maxBatch: 8, maxQueueDelayMs: 1000 }, models: [{ bundled: 'ppocr-cls' }] }))

/** OpenZeppelin MerkleProof's sorted-pair hash. */
const hashPair = (a: Hex, b: Hex): Hex => (BigInt(a) < BigInt(b) ? keccak256(concat([a, b])) : keccak256(concat([b, a])))

describe('batch signatures', () => {
  let network: LocalNetwork
  let api: ApiClient

  beforeAll(async () => {
    network = await startLocalNetwork({ build: false, chain: true, agents: [{ deviceId: DEVICE, configPath }] })
    api = apiClient(network.edge.url, network.apiKey)
    await waitForModelReady(api, 'ppocr-cls')
  })
  afterAll(async () => {
    await network?.close()
  })

  it('signs the jobs of one batch once; each answer carries a proof a caller verifies with viem', async () => {
    const seeds = Array.from({ length: JOBS }, (_, i) => 300 + i)
    const responses = await Promise.all(seeds.map((seed) => api.post('/v2/models/ppocr-cls/infer', exampleInferRequest(seed))))
    const deviceAddress = (await loadDeviceKey(localDeviceKeyPath(DEVICE))).address
    const ecdsaParts = new Set<string>()
    for (const [i, response] of responses.entries()) {
      expect(response.status, response.text).toBe(200)
      const p = response.body.parameters as Record<string, string | number>
      expect(p.batch_jobs).toBe(JOBS)
      const { attestation, signature } = answerAttestation(p)
      // 65 bytes, then a proof of ⌈log2 4⌉ = 2 levels.
      expect(signature).toMatch(/^0x[0-9a-f]{130}([0-9a-f]{64}){2}$/)
      ecdsaParts.add(signature.slice(0, 132))
      const view = (await api.get(`/api/jobs/${attestation.jobId}/attestation`)).body as { domain: { chainId: string; verifyingContract: Hex }; signature: Hex }
      // The edge recorded the whole signature, proof included, so it can be checked later too.
      expect(view.signature).toBe(signature)
      const proof = signature.slice(132).match(/.{64}/g)!.map((node) => `0x${node}` as Hex)
      const domain = { chainId: BigInt(view.domain.chainId), verifyingContract: view.domain.verifyingContract }
      const root = proof.reduce(hashPair, hashStruct({ data: attestation, primaryType: 'Attestation', types: ATTESTATION_TYPES }))
      const signer = await recoverTypedDataAddress({ ...attestationBatchTypedData(domain, root), signature: signature.slice(0, 132) as Hex })
      expect(signer.toLowerCase()).toBe(deviceAddress)
      // Each job still got its own answer: equal to onnxruntime run directly on its input.
      const direct = await runDirect(bundledModelPath('ppocr-cls'), {
        x: new ort.Tensor('float32', Float32Array.from(exampleTextLine(seeds[i]!)), [...EXAMPLE_SHAPE]),
      })
      const got = outputByName(response.body, 'softmax_0.tmp_0').data as number[]
      Array.from(direct['softmax_0.tmp_0']!.data as Float32Array).forEach((value, k) => expect(got[k]).toBeCloseTo(value, 6))
    }
    expect(ecdsaParts.size).toBe(1)
  })

  it("checks out with the README's viem snippet, run as written: batch-signed and single-signed jobs", async () => {
    const batched = await Promise.all(Array.from({ length: JOBS }, (_, i) => api.post('/v2/models/ppocr-cls/infer', exampleInferRequest(400 + i))))
    const alone = await api.post('/v2/models/ppocr-cls/infer', exampleInferRequest(500))
    expect(batched.map((r) => (r.body.parameters as { batch_jobs: number }).batch_jobs)).toEqual(Array(JOBS).fill(JOBS))
    expect((alone.body.parameters as { batch_jobs: number }).batch_jobs).toBe(1)
    await network.edge.runScheduled()
    const deviceAddress = (await loadDeviceKey(localDeviceKeyPath(DEVICE))).address
    for (const response of [batched[0]!, alone]) {
      const jobId = (response.body.parameters as { job_id: string }).job_id
      expect(await runReadmeSnippet(network.edge.url, network.apiKey, jobId)).toEqual({ ok: true, signer: deviceAddress })
    }
  })
})

/**
 * Runs the README's "Check a job" code block as a module of its own (in the repository, so it
 * resolves viem like a user's project would), with `edge`, `headers` and `jobId` defined first.
 */
async function runReadmeSnippet(edge: string, apiKey: string, jobId: string): Promise<{ ok: boolean; signer: string }> {
  const readme = readFileSync(join(import.meta.dirname, '../../README.md'), 'utf8')
  const after = readme.slice(readme.indexOf('Check a job with nothing but a public RPC'))
  const code = /```ts\n([\s\S]*?)```/.exec(after)![1]!
  const file = join(import.meta.dirname, '../../.depinfer', `readme-snippet-${process.pid}.mts`)
  mkdirSync(dirname(file), { recursive: true })
  writeFileSync(file, [
    `const edge = ${JSON.stringify(edge)}, jobId = ${JSON.stringify(jobId)}`,
    `const headers = { Authorization: ${JSON.stringify(`Bearer ${apiKey}`)} }`,
    code,
    'console.log(JSON.stringify({ ok, signer: signer.toLowerCase() }))',
  ].join('\n'))
  try {
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', file], { cwd: dirname(file) })
    return JSON.parse(stdout.trim().split('\n').at(-1)!) as { ok: boolean; signer: string }
  } finally {
    rmSync(file, { force: true })
  }
}
