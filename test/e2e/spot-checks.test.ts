/**
 * Spot checks end to end (SPOT_CHECK_RATE=1: every answered job is re-run), on the local chain
 * with pay per inference: two real agents confirm each other's answers; a device that signs
 * zeros it never computed (a deliberate fake, test/helpers/rogue-device.ts 'lazy': its
 * attestations verify, only a re-run shows the lie) is outvoted by the two real ones, taken out
 * of scheduling, its job is not charged, and the verdict is there for the operator. Check jobs
 * are unpaid and unrecorded: the attestation log holds only users' jobs.
 */
import { createPublicClient, createWalletClient, http, parseEther, type Address } from 'viem'
import { mnemonicToAccount } from 'viem/accounts'
import { foundry } from 'viem/chains'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { escrowAbi } from '../../contracts/generated/index.js'
import { startLocalNetwork, type LocalNetwork } from '../../scripts/local/network.js'
import { waitFor } from '../../scripts/local/wait-for.js'
import type { ModelDescriptor } from '../../shared/src/index.js'
import { startRogueDevice } from '../helpers/rogue-device.js'
import { apiClient, readyDevices, waitForModelReady, type ApiClient } from './support.js'

const MODEL = 'ppocr-cls'
const SHAPE = [1, 3, 48, 32]
const HONEST = ['honest-1', 'honest-2']
/** Every job's price: the demo models are published free, so the provider fee alone. */
const FEE = 7_000n
/** anvil's dev account #2: the paying user. */
const payer = mnemonicToAccount('test test test test test test test test test test test junk', { addressIndex: 2 })

interface CheckView {
  deviceId: string
  address: string
  jobId: string
  salt: string
  agreesWithAnswer?: boolean
  detail?: string
  attestation?: { jobId: string; device: string; outputHash: string }
}
interface SpotCheckView {
  jobId: string
  model: { name: string; version: string; sha256: string }
  answeredBy: { deviceId: string; address: string; salt: string }
  verdict: 'confirmed' | 'refuted' | 'inconclusive'
  faulty: string[]
  checks: CheckView[]
  checkedAt: number
  cursor: number
}

describe('spot checks', () => {
  let network: LocalNetwork
  let api: ApiClient
  let chain: ReturnType<typeof createPublicClient>
  let escrow: Address
  const deposit = parseEther('0.01')
  /** Jobs answered to the payer (each charged FEE unless refunded). */
  let answered = 0

  beforeAll(async () => {
    network = await startLocalNetwork({
      build: false,
      chain: true,
      agents: HONEST.map((deviceId) => ({ deviceId, models: MODEL })),
      edgeVars: { SPOT_CHECK_RATE: '1', PROVIDER_FEE_WEI: String(FEE), BATCH_CONFIRM_TIMEOUT_MS: '10000' },
    })
    chain = createPublicClient({ chain: foundry, transport: http(network.chain!.rpcUrl) })
    escrow = network.chain!.escrowAddress as Address
    const wallet = createWalletClient({ account: payer, chain: foundry, transport: http(network.chain!.rpcUrl) })
    const hash = await wallet.writeContract({ address: escrow, abi: escrowAbi, functionName: 'deposit', value: deposit })
    expect((await chain.waitForTransactionReceipt({ hash })).status).toBe('success')
    api = apiClient(network.edge.url, await network.edge.createApiKey('spot-check-payer', undefined, payer.address))
    await waitForModelReady(api, MODEL)
    await waitFor('both agents ready', async () => ((await readyDevices(api, MODEL)) === 2 ? true : undefined), 60_000)
  })
  afterAll(async () => {
    await network?.close()
  })

  const infer = async () => {
    const data = Array.from({ length: SHAPE.reduce((a, b) => a * b, 1) }, () => Math.round(Math.random() * 1e4) / 1e4)
    const response = await api.post(`/v2/models/${MODEL}/infer`, { inputs: [{ name: 'x', datatype: 'FP32', shape: SHAPE, data }] })
    expect(response.status, response.text).toBe(200)
    const parameters = response.body.parameters as { job_id: string; device_id: string; input_salt: string }
    expect(BigInt((response.body.parameters as { attestation_price_wei: string }).attestation_price_wei)).toBe(FEE)
    answered++
    return { jobId: parameters.job_id, deviceId: parameters.device_id, salt: parameters.input_salt, outputs: response.body.outputs as { data: number[] }[] }
  }
  const spotChecks = async (query = '') => {
    const response = await api.get(`/api/spot-checks${query}`)
    expect(response.status, response.text).toBe(200)
    return (response.body as { spotChecks: SpotCheckView[] }).spotChecks
  }
  /** The spot check of each job, once all are recorded (they run after the answer). */
  const checksOf = async (jobIds: string[]) => {
    let found: SpotCheckView[] = []
    await expect.poll(async () => {
      const all = await spotChecks('?limit=500')
      found = jobIds.map((id) => all.find((c) => c.jobId === id)).filter((c) => c !== undefined)
      return found.length
    }, { timeout: 20_000 }).toBe(jobIds.length)
    return found
  }

  it('re-runs answered jobs on the other device, which confirms them; check jobs are neither recorded nor paid', async () => {
    const jobs = []
    for (let i = 0; i < 6; i++) jobs.push(await infer())
    const checks = await checksOf(jobs.map((a) => a.jobId))
    for (const [i, check] of checks.entries()) {
      const answer = jobs[i]!
      expect(check).toMatchObject({ verdict: 'confirmed', faulty: [], answeredBy: { deviceId: answer.deviceId }, model: { name: MODEL, version: '1' } })
      expect(check.checks).toHaveLength(1)
      const [checker] = check.checks
      // The other device, under a job id of its own, signed the same outputs.
      expect(checker!.deviceId).toBe(HONEST.find((d) => d !== answer.deviceId))
      expect(checker!.agreesWithAnswer).toBe(true)
      expect(checker!.jobId).not.toBe(answer.jobId)
      expect(checker!.attestation!.jobId).toBe(checker!.jobId)
      expect(checker!.attestation!.device).toBe(checker!.address)
      const job = (await api.get(`/api/jobs/${answer.jobId}/attestation`)).body as { attestation: { outputHash: string }; spotCheck: SpotCheckView | null }
      // With each run's salt recorded, anyone holding the input can open every commitment.
      expect(job.spotCheck).toMatchObject({ jobId: answer.jobId, verdict: 'confirmed', answeredBy: { salt: answer.salt } })
      expect(checker!.salt).toMatch(/^0x[0-9a-f]{64}$/)
      expect(checker!.salt).not.toBe(answer.salt)
      // The same input gave the same outputs: the same output hash.
      expect(checker!.attestation!.outputHash).toBe(job.attestation.outputHash)
      // The check's own job is not in the attestation log: it is never batched or settled.
      expect((await api.get(`/api/jobs/${checker!.jobId}/attestation`)).status).toBe(404)
    }
    const log = (await api.get('/api/batches')).body as { attestations: { total: number } }
    expect(log.attestations.total).toBe(jobs.length)
  })

  it('catches a device that signs answers it never computed, takes it out of scheduling, and keeps the evidence', async () => {
    const meta = (await api.get(`/v2/models/${MODEL}`)).body as { sha256: string; inputs: ModelDescriptor['inputs']; outputs: ModelDescriptor['outputs'] }
    const model: ModelDescriptor = { name: MODEL, version: '1', sha256: meta.sha256, platform: 'onnxruntime_onnx', inputs: meta.inputs, outputs: meta.outputs, maxBatch: 1, state: 'ready' }
    const rogue = await startRogueDevice({ brokerUrl: network.broker.tcpUrl, deviceId: 'rogue-lazy', mode: 'lazy', model })
    try {
      await expect.poll(() => readyDevices(api, MODEL), { timeout: 10_000 }).toBe(3)
      // It claims to be the fastest, so it answers the first job: zeros, signed, accepted (the
      // attestation is valid). The re-runs on the two real agents show it.
      const first = await infer()
      expect(first.deviceId).toBe('rogue-lazy')
      expect(first.outputs[0]!.data.every((v) => v === 0)).toBe(true)
      const [check] = await checksOf([first.jobId])
      expect(check).toMatchObject({ verdict: 'refuted', faulty: ['rogue-lazy'], refunded: true, answeredBy: { deviceId: 'rogue-lazy', address: rogue.address } })
      expect(check!.checks.map((c) => c.deviceId).sort()).toEqual(HONEST)
      for (const c of check!.checks) {
        expect(c.agreesWithAnswer).toBe(false)
        expect(c.detail).toMatch(/differs at element/)
      }
      // Out of scheduling (and of checks): the next jobs go to the real agents only.
      await expect.poll(() => readyDevices(api, MODEL), { timeout: 5_000 }).toBe(2)
      const received = rogue.jobsReceived()
      const next = []
      for (let i = 0; i < 4; i++) next.push(await infer())
      expect(next.map((a) => a.deviceId).every((d) => HONEST.includes(d))).toBe(true)
      for (const later of await checksOf(next.map((a) => a.jobId))) expect(later).toMatchObject({ verdict: 'confirmed', faulty: [] })
      expect(rogue.jobsReceived()).toBe(received)
      // The same key under another device id stays out too.
      const twin = await startRogueDevice({ brokerUrl: network.broker.tcpUrl, deviceId: 'rogue-lazy-twin', mode: 'lazy', model, privateKey: rogue.privateKey })
      try {
        await new Promise((resolve) => setTimeout(resolve, 500))
        for (let i = 0; i < 3; i++) expect(HONEST).toContain((await infer()).deviceId)
        expect(twin.jobsReceived()).toBe(0)
      } finally {
        await twin.close()
      }
      // The operator finds it by device and verdict.
      expect((await spotChecks('?verdict=refuted&device=rogue-lazy')).map((c) => c.jobId)).toEqual([first.jobId])
      expect((await spotChecks(`?device=${rogue.address.toUpperCase().replace('0X', '0x')}`)).map((c) => c.jobId)).toEqual([first.jobId])
      // A real agent takes part in checks (it checked the rogue) and is never the one blamed.
      for (const deviceId of HONEST) {
        const involving = await spotChecks(`?device=${deviceId}&limit=500`)
        expect(involving.length).toBeGreaterThan(0)
        expect(involving.filter((c) => c.faulty.includes(deviceId))).toEqual([])
      }
      // Paid for to the wei: every job but the refuted one, settled on the Escrow; the rogue's
      // address earns nothing.
      await network.edge.runScheduled()
      await expect.poll(async () => {
        await network.edge.runScheduled()
        return chain.readContract({ address: escrow, abi: escrowAbi, functionName: 'balanceOf', args: [payer.address] })
      }, { timeout: 30_000, interval: 500 }).toBe(deposit - FEE * BigInt(answered - 1))
      expect((await api.get(`/api/payouts/${rogue.address}`)).status).toBe(404)
    } finally {
      await rogue.close()
    }
  })

  it('lists spot checks to the operator\'s keys only: the rows name every user\'s jobs', async () => {
    const made = await api.post('/api/keys', { label: 'self-service', payer: null })
    expect(made.status, made.text).toBe(201)
    const user = apiClient(network.edge.url, made.body.key as string)
    const refused = await user.get('/api/spot-checks')
    expect(refused.status).toBe(403)
    expect(refused.body).toMatchObject({ field: 'Authorization', detail: expect.stringContaining('operator') })
  })

  it('refuses a bad listing query with a problem naming the field', async () => {
    const response = await api.get('/api/spot-checks?verdict=guilty')
    expect(response.status).toBe(400)
    expect(response.headers.get('content-type')).toContain('application/problem+json')
    expect(response.body).toMatchObject({ field: 'verdict' })
    expect((await api.get('/api/spot-checks?limit=0')).body).toMatchObject({ status: 400, field: 'limit' })
    // A misspelt filter is refused, not dropped: the caller would get every check as if it matched.
    expect((await api.get('/api/spot-checks?verdcit=refuted')).body).toMatchObject({ status: 400, field: 'verdcit' })
    expect((await api.get('/api/spot-checks?verdict=refuted&verdict=confirmed')).body).toMatchObject({ status: 400, field: 'verdict' })
  })
})
