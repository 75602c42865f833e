/**
 * Attestations end to end on the real local EVM: every answer carries an EIP-712 attestation
 * signed by the device that ran the job; the edge refuses forged, misattributed, tampered or
 * missing ones (retrying on an honest device); the scheduled batcher posts Merkle roots to the
 * real AttestationRegistry, survives the RPC failing mid-tick without losing or double-posting
 * anything, and every job's proof checks out on-chain and with a second client library.
 */
import { StandardMerkleTree } from '@openzeppelin/merkle-tree'
import { ethers } from 'ethers'
import {
  concat,
  createPublicClient,
  createWalletClient,
  http,
  parseEventLogs,
  recoverTypedDataAddress,
  sha256,
  toHex,
  type Hex,
} from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { foundry } from 'viem/chains'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { attestationRegistryAbi } from '../../contracts/generated/index.js'
import { loadDeviceKey } from '../../device-agent/src/keys/device-key.js'
import { SUSPECT_AFTER_FAILURES } from '../../edge/src/gateway/device-table.js'
import { localDeviceKeyPath } from '../../scripts/local/agent-process.js'
import { startLocalNetwork, type LocalNetwork } from '../../scripts/local/network.js'
import { waitFor } from '../../scripts/local/wait-for.js'
import {
  ATTESTATION_LEAF_TYPES,
  attestationTypedData,
  canonicalTensorBytes,
  encodeJsonRows,
  outputHash,
  type ModelDescriptor,
  type RawTensor,
} from '../../shared/src/index.js'
import { startRogueDevice, type RogueMode } from '../helpers/rogue-device.js'
import { startRpcProxy, type RpcProxy } from '../helpers/rpc-proxy.js'
import { answerAttestation, apiClient, readyDevices, waitForModelReady, type ApiClient } from './support.js'

const DEVICE = 'attesting-device'
const MODEL = 'ppocr-cls'
/** Small enough that the thousands-of-jobs case takes seconds; the model takes any width. */
const SHAPE = [1, 3, 48, 32]
const MAX_LEAVES = 700

interface JobView {
  jobId: Hex
  seq: number
  deviceId: string
  attestation: { jobId: Hex; modelHash: Hex; inputHash: Hex; outputHash: Hex; device: Hex; price: string; completedAt: string }
  signature: Hex
  domain: { name: string; version: string; chainId: string; verifyingContract: Hex }
  leaf: Hex
  batch: { root: Hex; status: string; fromSeq: number; toSeq: number; count: number; txHash: Hex | null; blockNumber: number | null; lastError: string | null } | null
  proof: Hex[] | null
}

/** A fresh random input, so every job's commitment differs. */
function randomInput(): { data: number[]; raw: RawTensor } {
  // `|| 0`: JSON has no -0 (it arrives as 0), and the commitment is over the bits.
  const data = Array.from({ length: SHAPE.reduce((a, b) => a * b, 1) }, () => Math.round((Math.random() * 2 - 1) * 1e4) / 1e4 || 0)
  return { data, raw: { name: 'x', datatype: 'FP32', shape: SHAPE, data: encodeJsonRows('FP32', [data], 'x') } }
}

describe('attestations on the local chain', () => {
  let network: LocalNetwork
  let api: ApiClient
  let rpc: RpcProxy
  let deviceAddress: Hex
  let chain: ReturnType<typeof createPublicClient>
  let registry: Hex
  let submitter: Hex

  beforeAll(async () => {
    rpc = await startRpcProxy()
    network = await startLocalNetwork({
      build: false,
      chain: true,
      agents: [{ deviceId: DEVICE, models: MODEL }],
      // The batcher sends through the fault-injecting proxy; clients read the chain directly.
      edgeVars: { CHAIN_SUBMIT_RPC_URL: rpc.url, BATCH_MAX_LEAVES: String(MAX_LEAVES), BATCH_CONFIRM_TIMEOUT_MS: '10000' },
    })
    rpc.target = network.chain!.rpcUrl
    registry = network.chain!.registryAddress
    submitter = privateKeyToAccount(network.chain!.submitterPrivateKey).address
    chain = createPublicClient({ transport: http(network.chain!.rpcUrl) })
    api = apiClient(network.edge.url, network.apiKey)
    deviceAddress = (await loadDeviceKey(localDeviceKeyPath(DEVICE))).address
    await waitForModelReady(api, MODEL)
  })
  afterAll(async () => {
    await network?.close()
    await rpc?.close()
  })

  const infer = async () => {
    const input = randomInput()
    const response = await api.post(`/v2/models/${MODEL}/infer`, { inputs: [{ name: 'x', datatype: 'FP32', shape: SHAPE, data: input.data }] })
    expect(response.status, response.text).toBe(200)
    return { input: input.raw, body: response.body as { parameters: Record<string, string | number>; outputs: { name: string; datatype: 'FP32'; shape: number[]; data: number[] }[] } }
  }
  const jobView = async (jobId: string) => {
    const response = await api.get(`/api/jobs/${jobId}/attestation`)
    expect(response.status, response.text).toBe(200)
    return response.body as unknown as JobView
  }
  const runBatcher = () => network.edge.runScheduled()
  const postedEvents = async (root?: Hex) => {
    const logs = await chain.getLogs({ address: registry, fromBlock: 0n })
    return parseEventLogs({ abi: attestationRegistryAbi, eventName: 'BatchSubmitted', logs }).filter((e) => !root || e.args.root === root)
  }
  /** Settles whatever earlier tests left pending, so each test sees only its own batches. */
  const drain = async () => {
    rpc.mode = 'pass'
    await runBatcher()
  }

  it('answers every job with an attestation the caller can check: device signature, its own inputs, the outputs it got', async () => {
    const metadata = await api.get(`/v2/models/${MODEL}`)
    for (let i = 0; i < 3; i++) {
      const { input, body } = await infer()
      const p = body.parameters
      const { attestation } = answerAttestation(p)
      // Signed by the key in the device's own key file (viem recovers it independently).
      const view = await jobView(attestation.jobId)
      const domain = { chainId: BigInt(view.domain.chainId), verifyingContract: view.domain.verifyingContract }
      expect(domain).toEqual({ chainId: 31337n, verifyingContract: registry.toLowerCase() })
      const signer = await recoverTypedDataAddress({ ...attestationTypedData(domain, attestation), signature: p.attestation_signature as Hex })
      expect(signer.toLowerCase()).toBe(deviceAddress)
      expect(attestation.device).toBe(deviceAddress)
      // The model file that was asked for.
      expect(attestation.modelHash).toBe(`0x${(metadata.body as { sha256: string }).sha256}`)
      // The caller opens its own commitment with the salt it was given.
      expect(attestation.inputHash).toBe(sha256(concat([p.input_salt as Hex, toHex(canonicalTensorBytes([input]))])))
      // The outputs it received are the ones attested.
      const outputs: RawTensor[] = body.outputs.map((o) => ({ ...o, data: encodeJsonRows(o.datatype, [o.data], o.name) }))
      expect(attestation.outputHash).toBe(outputHash(outputs))
      // The edge recorded exactly what the caller got.
      expect(view).toMatchObject({ seq: p.attestation_seq, deviceId: DEVICE, signature: p.attestation_signature, batch: null, proof: null })
      expect(view.attestation).toEqual({ ...attestation, price: attestation.price.toString(), completedAt: attestation.completedAt.toString() })
    }
    // Salts are fresh per job: the same input twice gives different commitments.
    const a = await infer()
    const b = await infer()
    expect(a.body.parameters.input_salt).not.toBe(b.body.parameters.input_salt)
  })

  it('posts batches on-chain; each proof verifies in the contract (viem) and with ethers v6', async () => {
    await drain()
    const jobs = await Promise.all(Array.from({ length: 6 }, () => infer()))
    await runBatcher()
    const batches = (await api.get('/api/batches')).body as { batches: JobView['batch'][]; attestations: { pending: number } }
    expect(batches.attestations.pending).toBe(0)
    const provider = new ethers.JsonRpcProvider(network.chain!.rpcUrl, undefined, { staticNetwork: true })
    const contract = new ethers.Contract(registry, attestationRegistryAbi as unknown as ethers.InterfaceAbi, provider)
    for (const { body } of jobs) {
      const view = await jobView(body.parameters.job_id as string)
      expect(view.batch).toMatchObject({ status: 'confirmed', txHash: expect.stringMatching(/^0x[0-9a-f]{64}$/) })
      const batch = view.batch!
      expect(view.seq).toBeGreaterThanOrEqual(batch.fromSeq)
      expect(view.seq).toBeLessThanOrEqual(batch.toSeq)
      const a = view.attestation
      const tuple = { ...a, price: BigInt(a.price), completedAt: BigInt(a.completedAt), seq: BigInt(view.seq) }
      // viem: the contract checks the tuple's leaf and its seq against the posted batch.
      expect(await chain.readContract({ address: registry, abi: attestationRegistryAbi, functionName: 'verifyLeafData', args: [batch.root, view.proof!, tuple] })).toBe(true)
      // ethers v6: leaf recomputed independently, then checked by the contract.
      const encoded = ethers.AbiCoder.defaultAbiCoder().encode([...ATTESTATION_LEAF_TYPES], [a.jobId, a.modelHash, a.inputHash, a.outputHash, a.device, a.price, a.completedAt, view.seq])
      const leaf = ethers.keccak256(ethers.getBytes(ethers.keccak256(encoded)))
      expect(leaf).toBe(view.leaf)
      expect(await contract.getFunction('verifyAttestation').staticCall(batch.root, view.proof, leaf)).toBe(true)
      // A proof with one sibling changed proves nothing.
      if (view.proof!.length > 0) {
        const forged = [...view.proof!]
        forged[0] = `0x${(BigInt(forged[0]!) ^ 1n).toString(16).padStart(64, '0')}` as Hex
        expect(await contract.getFunction('verifyAttestation').staticCall(batch.root, forged, leaf)).toBe(false)
      }
      // The batch on-chain is the one the edge reports.
      const onChain = await chain.readContract({ address: registry, abi: attestationRegistryAbi, functionName: 'getBatch', args: [batch.root] })
      expect(onChain).toMatchObject({ fromSeq: BigInt(batch.fromSeq), toSeq: BigInt(batch.toSeq), count: batch.count, submitter })
      expect(await postedEvents(batch.root)).toHaveLength(1)
    }
    provider.destroy()
  })

  it('keeps attestations when the RPC is down or dies mid-send, and a later tick posts the batch exactly once', async () => {
    await drain()
    const jobs = await Promise.all(Array.from({ length: 3 }, () => infer()))
    const nonceBefore = await chain.getTransactionCount({ address: submitter })

    rpc.mode = 'down'
    await runBatcher()
    let view = await jobView(jobs[0]!.body.parameters.job_id as string)
    expect(view.batch).toMatchObject({ status: 'pending', lastError: expect.any(String) })
    const root = view.batch!.root
    expect(await postedEvents(root)).toHaveLength(0)

    // The transaction goes through but its hash never comes back.
    rpc.mode = 'lose-send-result'
    await runBatcher()
    expect(await postedEvents(root)).toHaveLength(1)
    view = await jobView(jobs[0]!.body.parameters.job_id as string)
    expect(view.batch!.status).not.toBe('confirmed')

    rpc.mode = 'pass'
    await runBatcher()
    await runBatcher()
    for (const { body } of jobs) {
      view = await jobView(body.parameters.job_id as string)
      expect(view.batch).toMatchObject({ root, status: 'confirmed' })
    }
    expect(await postedEvents(root)).toHaveLength(1)
    // Exactly one transaction was sent for it across all those ticks.
    expect(await chain.getTransactionCount({ address: submitter })).toBe(nonceBefore + 1)
  })

  it('does not count a transaction that another took the nonce of (a wallet "cancel") as posting its batch', async () => {
    await drain()
    const jobs = await Promise.all(Array.from({ length: 3 }, () => infer()))
    const anvil = (method: string, params: unknown[] = []) => chain.request({ method: method as 'eth_chainId', params: params as [] })
    await anvil('evm_setAutomine', [false])
    let tick: Promise<unknown> | undefined
    try {
      tick = runBatcher()
      // The batcher's transaction waits in the pool; the operator cancels it with a 0-value
      // transfer to itself at the same nonce and a higher fee.
      const pending = await waitFor('the batch transaction in the pool', async () => {
        const block = await chain.getBlock({ blockTag: 'pending', includeTransactions: true })
        return block.transactions.find((tx) => tx.to?.toLowerCase() === registry.toLowerCase())
      }, 10_000, 50)
      const operator = createWalletClient({ account: privateKeyToAccount(network.chain!.submitterPrivateKey), chain: foundry, transport: http(network.chain!.rpcUrl) })
      await operator.sendTransaction({ to: submitter, value: 0n, nonce: pending.nonce, maxFeePerGas: pending.maxFeePerGas! * 2n, maxPriorityFeePerGas: pending.maxPriorityFeePerGas! * 2n })
      await anvil('evm_mine')
    } finally {
      await anvil('evm_setAutomine', [true])
    }
    await tick
    let view = await jobView(jobs[0]!.body.parameters.job_id as string)
    // viem names the replacement only when it saw our transaction before it was replaced; when
    // the replacement is mined before viem's first look (a loaded machine), it waits out the
    // confirm timeout instead. Either way the batch is not counted as posted.
    expect(view.batch).toMatchObject({ status: 'pending', lastError: expect.stringMatching(/was replaced by|Timed out while waiting for transaction/) })
    const root = view.batch!.root
    expect(await postedEvents(root)).toHaveLength(0)

    await runBatcher()
    for (const { body } of jobs) {
      view = await jobView(body.parameters.job_id as string)
      expect(view.batch).toMatchObject({ root, status: 'confirmed' })
    }
    expect(await postedEvents(root)).toHaveLength(1)
  })

  /**
   * The Gateway records each accepted attestation in its own storage and answers; D1 gets it
   * from a background flush. `refuseAttestations` makes D1 fail every attestation INSERT (as if
   * it were unreachable for writes) so that flush cannot happen until the test allows it.
   */
  const refuseAttestations = async () => {
    const db = await network.edge.miniflare.getD1Database('DB')
    await db.prepare("CREATE TRIGGER refuse_attestations BEFORE INSERT ON attestations BEGIN SELECT RAISE(ABORT, 'D1 unavailable (test)'); END").run()
    return async () => {
      await db.prepare('DROP TRIGGER IF EXISTS refuse_attestations').run()
    }
  }
  const seqOf = (job: Awaited<ReturnType<typeof infer>>) => Number(job.body.parameters.attestation_seq)
  const counts = async () => ((await api.get('/api/batches')).body as { attestations: { total: number; pending: number } }).attestations

  it('answers while D1 cannot take attestations, and serves each one the moment D1 can', async () => {
    await drain()
    const before = await counts()
    const allow = await refuseAttestations()
    let jobs: Awaited<ReturnType<typeof infer>>[]
    try {
      // Answered all the same: only the Gateway's own storage write is on the answer's path.
      jobs = await Promise.all(Array.from({ length: 3 }, () => infer()))
      const unknownYet = await api.get(`/api/jobs/${jobs[0]!.body.parameters.job_id}/attestation`)
      expect(unknownYet.status, unknownYet.text).toBe(503)
      expect(unknownYet.body).toMatchObject({ type: 'urn:depinfer:problem:attestation-not-stored-yet', field: 'jobId' })
      expect(unknownYet.headers.get('retry-after')).toBe('5')
      // While answered jobs wait, an id the edge never answered cannot be told apart from them.
      expect((await api.get(`/api/jobs/0x${'cd'.repeat(32)}/attestation`)).status).toBe(503)
      expect(await counts()).toEqual({ total: before.total + 3, pending: before.pending + 3 })
      // A tick meanwhile batches nothing and loses nothing.
      await runBatcher()
      expect(await counts()).toEqual({ total: before.total + 3, pending: before.pending + 3 })
    } finally {
      await allow()
    }
    // Nothing else flushes in between (the Gateway's alarm is a minute away): the proofs API
    // moves the outbox to D1 itself before looking.
    for (const job of jobs) {
      const view = await jobView(job.body.parameters.job_id as string)
      expect(view).toMatchObject({ seq: seqOf(job), deviceId: DEVICE, batch: null, proof: null })
    }
    expect(await counts()).toEqual({ total: before.total + 3, pending: before.pending + 3 })
    expect((await api.get(`/api/jobs/0x${'cd'.repeat(32)}/attestation`)).status).toBe(404)
  })

  it('puts every job answered before a tick in that tick\'s batch, seqs contiguous from the last batch', async () => {
    await drain()
    const [last] = ((await api.get('/api/batches?limit=1')).body as { batches: { toSeq: number }[] }).batches
    const n = 40
    // D1 refuses until the tick: only the tick's own flush can bring these jobs to the batcher.
    const allow = await refuseAttestations()
    let jobs: Awaited<ReturnType<typeof infer>>[]
    try {
      jobs = await Promise.all(Array.from({ length: n }, () => infer()))
    } finally {
      await allow()
    }
    const seqs = jobs.map(seqOf).sort((a, b) => a - b)
    // The Gateway assigned them: strictly increasing, no gaps, right after what D1 already had.
    expect(seqs).toEqual(Array.from({ length: n }, (_, i) => (last?.toSeq ?? 0) + 1 + i))

    const eventsBefore = (await postedEvents()).length
    await runBatcher()
    const events = (await postedEvents()).slice(eventsBefore)
    expect(events).toHaveLength(1)
    expect(events[0]!.args).toMatchObject({ count: n, fromSeq: BigInt(seqs[0]!), toSeq: BigInt(seqs.at(-1)!) })
    for (const job of jobs) {
      const view = await jobView(job.body.parameters.job_id as string)
      expect(view.seq).toBe(seqOf(job))
      expect(view.batch).toMatchObject({ root: events[0]!.args.root, status: 'confirmed' })
    }
  })

  it('batches thousands of attestations into several roots, every one provable', async () => {
    await drain()
    const total = 2_000
    const jobIds: string[] = []
    const concurrency = 12
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (jobIds.length < total) {
          const slot = jobIds.push('') - 1
          jobIds[slot] = (await infer()).body.parameters.job_id as string
        }
      }),
    )
    const eventsBefore = (await postedEvents()).length
    await runBatcher()
    const events = (await postedEvents()).slice(eventsBefore)
    expect(events.length).toBe(Math.ceil(total / MAX_LEAVES))
    expect(events.reduce((sum, e) => sum + e.args.count, 0)).toBe(total)

    const roots = new Set(events.map((e) => e.args.root))
    const views: JobView[] = []
    for (let i = 0; i < jobIds.length; i += concurrency) {
      views.push(...(await Promise.all(jobIds.slice(i, i + concurrency).map(jobView))))
    }
    for (const view of views) {
      expect(view.batch?.status).toBe('confirmed')
      expect(roots.has(view.batch!.root)).toBe(true)
      // OpenZeppelin's own library agrees with every proof, off-chain.
      const a = view.attestation
      const values = [a.jobId, a.modelHash, a.inputHash, a.outputHash, a.device, a.price, a.completedAt, String(view.seq)]
      if (!StandardMerkleTree.verify(view.batch!.root, [...ATTESTATION_LEAF_TYPES], values, view.proof!)) {
        expect.fail(`job ${view.jobId} (seq ${view.seq}) does not verify under ${view.batch!.root}`)
      }
    }
    // And the contract, for a sample from every batch.
    for (const view of views.filter((_, i) => i % 97 === 0)) {
      expect(await chain.readContract({ address: registry, abi: attestationRegistryAbi, functionName: 'verifyAttestation', args: [view.batch!.root, view.proof!, view.leaf] })).toBe(true)
    }
  }, 300_000)

  /** The served model's descriptor, as a rogue device advertises it. */
  const servedModel = async (): Promise<ModelDescriptor> => {
    const meta = (await api.get(`/v2/models/${MODEL}`)).body as { sha256: string; inputs: ModelDescriptor['inputs']; outputs: ModelDescriptor['outputs'] }
    return { name: MODEL, version: '1', sha256: meta.sha256, platform: 'onnxruntime_onnx', inputs: meta.inputs, outputs: meta.outputs, maxBatch: 1, state: 'ready' }
  }
  /** A rogue device serving MODEL, once the edge counts it ready (untried, it is guessed as fast as the fastest round trip seen). */
  const routedRogue = async (deviceId: string, mode: RogueMode, options: { victimId?: string } = {}) => {
    const rogue = await startRogueDevice({ brokerUrl: network.broker.tcpUrl, deviceId, mode, model: await servedModel(), ...options })
    await expect.poll(() => readyDevices(api, MODEL), { timeout: 10_000 }).toBe(2)
    return rogue
  }
  /**
   * Sends jobs until one goes to `rogue` and returns that job's answer. An untried device is
   * guessed as fast as the fastest round trip seen. The honest device's measured figure often
   * ties with that guess, because workerd's clock counts whole milliseconds, and a tie is broken
   * at random.
   */
  const inferUntilSentTo = async (rogue: Awaited<ReturnType<typeof routedRogue>>) => {
    for (let attempt = 0; attempt < 20; attempt++) {
      const answer = await infer()
      if (rogue.jobsReceived() > 0) return answer
    }
    return expect.fail('20 jobs in a row went to the honest device, none to the new one')
  }

  describe.each<RogueMode>(['forged-signature', 'wrong-device', 'tampered-output', 'missing', 'wrong-outputs', 'refuse-input'])('a device whose answer is %s', (mode) => {
    it('has its answer discarded, the job answered by an honest device, and is not sent the next job', async () => {
      const rogue = await routedRogue(`rogue-${mode}`, mode)
      try {
        const first = await inferUntilSentTo(rogue)
        expect(rogue.jobsReceived()).toBe(1)
        expect(first.body.parameters).toMatchObject({ device_id: DEVICE, attempts: 2, attestation_device: deviceAddress })
        expect((await jobView(first.body.parameters.job_id as string)).deviceId).toBe(DEVICE)
        const second = await infer()
        expect(second.body.parameters).toMatchObject({ device_id: DEVICE, attempts: 1 })
        expect(rogue.jobsReceived()).toBe(1)
      } finally {
        await rogue.close()
      }
    })
  })

  it("does not hold a job's missed deadline against the device when the caller's budget was too short to blame it", async () => {
    // A caller's own timeout_ms of 1.8 s gives the first attempt under the 1 s below which a
    // miss is not a device's fault: otherwise any key could put devices out of scheduling by
    // sending jobs with tiny timeouts under load.
    // After its first miss the rogue is expected to be slow (the default 100 ms): it gets a job
    // only while the honest device is loaded, so the jobs go 48 at a time.
    const rogue = await routedRogue('rogue-deadline', 'deadline-exceeded')
    const round = async () => {
      const responses = await Promise.all(
        Array.from({ length: 48 }, () =>
          api.post(`/v2/models/${MODEL}/infer`, {
            inputs: [{ name: 'x', datatype: 'FP32', shape: SHAPE, data: randomInput().data }],
            parameters: { timeout_ms: 1_800 },
          }),
        ),
      )
      for (const response of responses) {
        expect(response.status, response.text).toBe(200)
        expect(response.body.parameters).toMatchObject({ device_id: DEVICE })
      }
    }
    try {
      for (let rounds = 0; rounds < 20 && rogue.jobsReceived() < SUSPECT_AFTER_FAILURES; rounds++) await round()
      expect(rogue.jobsReceived()).toBeGreaterThanOrEqual(SUSPECT_AFTER_FAILURES)
      // More misses than make a device suspect, and it is still sent jobs.
      const missed = rogue.jobsReceived()
      for (let rounds = 0; rounds < 20 && rogue.jobsReceived() === missed; rounds++) await round()
      expect(rogue.jobsReceived()).toBeGreaterThan(missed)
    } finally {
      await rogue.close()
    }
  })

  it("ignores results a device sends in another device's name: the job is answered, the other device keeps its standing", async () => {
    const rogue = await routedRogue('rogue-impersonator', 'impersonate', { victimId: DEVICE })
    try {
      // The rogue gets the job, fails it, and floods results for it in DEVICE's name while
      // DEVICE runs the retry.
      const first = await inferUntilSentTo(rogue)
      expect(rogue.jobsReceived()).toBe(1)
      expect(first.body.parameters).toMatchObject({ device_id: DEVICE, attempts: 2, attestation_device: deviceAddress })
    } finally {
      await rogue.close()
    }
    // Had a forged result counted as DEVICE's, DEVICE would be left out for a minute (503).
    const next = await infer()
    expect(next.body.parameters).toMatchObject({ device_id: DEVICE })
  })

  it('routes nothing to a device that does not prove it holds the key it advertises (no ProviderRegistry here)', async () => {
    const model = await servedModel()
    const rogue = await startRogueDevice({
      brokerUrl: network.broker.tcpUrl,
      deviceId: 'rogue-unproven',
      mode: 'unproven-key',
      model,
      // A model only it lists, so the index says why it is not routed.
      alsoServes: [{ ...model, name: 'unproven-only' }],
    })
    try {
      await expect.poll(async () => {
        const index = (await api.post('/v2/repository/index')).body as unknown as { name: string; reason: string }[]
        return index.find((e) => e.name === 'unproven-only')?.reason
      }, { timeout: 10_000 }).toContain('rogue-unproven: the device advertises no signing key it proves to hold')
      for (let i = 0; i < 3; i++) expect((await infer()).body.parameters).toMatchObject({ device_id: DEVICE, attempts: 1 })
      expect(rogue.jobsReceived()).toBe(0)
    } finally {
      await rogue.close()
    }
  })

  it('gives 404 for an unknown job and 400 for a malformed id, as problem+json naming jobId', async () => {
    const unknown = await api.get(`/api/jobs/0x${'ab'.repeat(32)}/attestation`)
    expect(unknown.status).toBe(404)
    expect(unknown.body).toMatchObject({ field: 'jobId' })
    const bad = await api.get('/api/jobs/not-a-job/attestation')
    expect(bad.status).toBe(400)
    expect(bad.headers.get('content-type')).toMatch(/application\/problem\+json/)
    expect(bad.body).toMatchObject({ field: 'jobId' })
    expect((await api.get('/api/batches?limit=0')).body).toMatchObject({ field: 'limit' })
    expect((await api.get('/api/batches?limt=1')).body).toMatchObject({ status: 400, field: 'limt' })
  })
})
