/**
 * Old attestations leave D1 for R2 (edge/src/batching/archive.ts): once a batch is confirmed on
 * the real local chain, settled on the Escrow, and older than ATTESTATION_RETENTION_DAYS (0 here),
 * its attestation rows and settled reservations are written to R2 and deleted from D1, and every
 * job is still served with the same attestation and a proof the contract accepts. The ticks are
 * fired with a later `scheduledTime` to stand for time passing.
 */
import { createPublicClient, createWalletClient, http, parseEther, type Address, type Hex } from 'viem'
import { mnemonicToAccount } from 'viem/accounts'
import { foundry } from 'viem/chains'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { attestationRegistryAbi, escrowAbi } from '../../contracts/generated/index.js'
import { buildMerkleTree } from '../../shared/src/index.js'
import type { AttestationRow } from '../../edge/src/attestations/rows.js'
import { batchLeaves } from '../../edge/src/batching/batcher.js'
import { startLocalNetwork, type LocalNetwork } from '../../scripts/local/network.js'
import { apiClient, waitForModelReady, type ApiClient } from './support.js'

const DEVICE = 'archiving-device'
const PROVIDER_FEE = 7_000n
const payer = mnemonicToAccount('test test test test test test test test test test test junk', { addressIndex: 2 })
const MINUTE_MS = 60_000

interface JobView {
  jobId: Hex
  seq: number
  attestation: { jobId: Hex; modelHash: Hex; inputHash: Hex; outputHash: Hex; device: Address; price: string; completedAt: string }
  leaf: Hex
  batch: { root: Hex; status: string; fromSeq: number; toSeq: number; count: number; archivedAt: number | null } | null
  proof: Hex[] | null
}

const job = (seed: number) => ({
  inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3, 48, 32], data: Array.from({ length: 3 * 48 * 32 }, (_, i) => Math.round(Math.sin(i * seed) * 1e4) / 1e4) }],
})

describe('attestations archived from D1 to R2', () => {
  let network: LocalNetwork
  let api: ApiClient
  let paying: ApiClient
  let chain: ReturnType<typeof createPublicClient>
  const count = async (sql: string, ...values: unknown[]) =>
    (await (await network.edge.miniflare.getD1Database('DB')).prepare(sql).bind(...values).first<{ n: number }>())!.n
  const view = async (jobId: string) => {
    const response = await api.get(`/api/jobs/${jobId}/attestation`)
    expect(response.status, response.text).toBe(200)
    return response.body as unknown as JobView
  }
  const verifiesOnChain = (v: JobView) => {
    const a = v.attestation
    const tuple = { ...a, price: BigInt(a.price), completedAt: BigInt(a.completedAt), seq: BigInt(v.seq) }
    return chain.readContract({ address: network.chain!.registryAddress, abi: attestationRegistryAbi, functionName: 'verifyLeafData', args: [v.batch!.root, v.proof!, tuple] })
  }

  beforeAll(async () => {
    network = await startLocalNetwork({
      build: false,
      chain: true,
      agents: [{ deviceId: DEVICE, models: 'ppocr-cls' }],
      edgeVars: { PROVIDER_FEE_WEI: String(PROVIDER_FEE), ATTESTATION_RETENTION_DAYS: '0', BATCH_CONFIRM_TIMEOUT_MS: '10000' },
    })
    api = apiClient(network.edge.url, network.apiKey)
    paying = apiClient(network.edge.url, await network.edge.createApiKey('archive-payer', undefined, payer.address))
    chain = createPublicClient({ chain: foundry, transport: http(network.chain!.rpcUrl) })
    const wallet = createWalletClient({ account: payer, chain: foundry, transport: http(network.chain!.rpcUrl) })
    const hash = await wallet.writeContract({ address: network.chain!.escrowAddress, abi: escrowAbi, functionName: 'deposit', value: parseEther('0.01') })
    expect((await chain.waitForTransactionReceipt({ hash })).status).toBe('success')
    await waitForModelReady(api, 'ppocr-cls')
  })
  afterAll(async () => {
    await network?.close()
  })

  it('moves a settled batch to R2 after the retention, and keeps serving every job with a proof the contract accepts', async () => {
    const jobIds: string[] = []
    for (let i = 1; i <= 5; i++) {
      const response = await paying.post('/v2/models/ppocr-cls/infer', job(i))
      expect(response.status, response.text).toBe(200)
      jobIds.push((response.body.parameters as { job_id: string }).job_id)
    }
    // Batched, confirmed and settled, but settled only now: its reservations still count for
    // balance reads made before the settlement, so nothing moves yet.
    await network.edge.runScheduled()
    const before = await Promise.all(jobIds.map(view))
    const root = before[0]!.batch!.root
    expect(before.every((v) => v.batch?.root === root && v.batch.status === 'confirmed' && v.batch.archivedAt === null)).toBe(true)
    expect(await count('SELECT COUNT(*) AS n FROM attestations WHERE batch_root = ?', root)).toBe(5)
    expect(await count("SELECT COUNT(*) AS n FROM reservations WHERE settlement_root = ? AND status = 'settled'", root)).toBe(5)

    const later = Date.now() + 11 * MINUTE_MS
    await network.edge.runScheduled(new Date(later))
    expect(await count('SELECT COUNT(*) AS n FROM attestations WHERE batch_root = ?', root)).toBe(0)
    expect(await count('SELECT COUNT(*) AS n FROM reservations WHERE settlement_root = ?', root)).toBe(0)
    // Nothing is left in D1 per job: the batch's row keeps its jobs' time span, and a job id's
    // first 6 bytes are the time it was minted, which finds the batch again.
    expect(await count('SELECT COUNT(*) AS n FROM archived_jobs')).toBe(0)
    const minted = jobIds.map((id) => Number.parseInt(id.slice(2, 14), 16))
    expect(await count('SELECT jobs_from_ms AS n FROM batches WHERE root = ?', root)).toBe(Math.min(...minted))
    expect(await count('SELECT jobs_to_ms AS n FROM batches WHERE root = ?', root)).toBe(Math.max(...minted))
    expect(Math.max(...minted) - Math.min(...minted)).toBeLessThan(MINUTE_MS)

    for (const [i, jobId] of jobIds.entries()) {
      const after = await view(jobId)
      expect(after).toEqual({ ...before[i], batch: { ...before[i]!.batch, archivedAt: later } })
      expect(await verifiesOnChain(after)).toBe(true)
    }
    // R2 holds who paid what for each job, next to the attestations.
    const object = await (await network.edge.miniflare.getR2Bucket('MODELS')).get(`attestation-batches/${root}.json`)
    const archive = (await object!.json()) as { attestations: { job_id: string }[]; reservations: { job_id: string; payer: string; price_wei: string }[] }
    expect(archive.attestations.map((a) => a.job_id)).toEqual(jobIds)
    expect(archive.reservations.map((r) => [r.job_id, r.payer, r.price_wei])).toEqual(jobIds.map((id) => [id, payer.address.toLowerCase(), String(PROVIDER_FEE)]))
    // An id minted inside the batch's time span that is none of its jobs is still no job.
    const madeUp = `${jobIds[2]!.slice(0, 14)}${'0'.repeat(52)}`
    expect(await api.get(`/api/jobs/${madeUp}/attestation`)).toMatchObject({ status: 404, body: { field: 'jobId' } })
    const batches = (await api.get('/api/batches')).body as { batches: JobView['batch'][]; attestations: { total: number; pending: number } }
    expect(batches.attestations).toEqual({ total: 5, pending: 0 })
    expect(batches.batches[0]).toMatchObject({ root, archivedAt: later })

    // A batch archived before migration 0009 has no time span, and listed its jobs instead.
    const db = await network.edge.miniflare.getD1Database('DB')
    await db.prepare('UPDATE batches SET jobs_from_ms = NULL, jobs_to_ms = NULL WHERE root = ?').bind(root).run()
    const fromSeq = before[0]!.batch!.fromSeq
    for (const jobId of jobIds) await db.prepare('INSERT INTO archived_jobs (job_id, from_seq) VALUES (unhex(?), ?)').bind(jobId.slice(2), fromSeq).run()
    expect(await view(jobIds[4]!)).toEqual({ ...before[4], batch: { ...before[4]!.batch, archivedAt: later } })
  })

  it('goes on numbering and batching jobs after the archived ones', async () => {
    const response = await paying.post('/v2/models/ppocr-cls/infer', job(9))
    expect(response.status, response.text).toBe(200)
    await network.edge.runScheduled()
    const next = await view((response.body.parameters as { job_id: string }).job_id)
    expect(next.seq).toBe(6)
    expect(next.batch).toMatchObject({ fromSeq: 6, toSeq: 6, status: 'confirmed', archivedAt: null })
    expect(await verifiesOnChain(next)).toBe(true)
    expect((await api.get(`/api/jobs/0x${'ab'.repeat(32)}/attestation`)).status).toBe(404)
  })
})

describe('attestations archived without payments', () => {
  let network: LocalNetwork
  let api: ApiClient
  beforeAll(async () => {
    // No Escrow: nothing to settle, so a confirmed batch is archived as soon as the retention allows.
    network = await startLocalNetwork({
      build: false,
      chain: true,
      agents: [{ deviceId: 'archiving-free-device', models: 'ppocr-cls' }],
      edgeVars: { ESCROW_ADDRESS: '', ATTESTATION_RETENTION_DAYS: '0', BATCH_CONFIRM_TIMEOUT_MS: '10000' },
    })
    api = apiClient(network.edge.url, network.apiKey)
    await waitForModelReady(api, 'ppocr-cls')
  })
  afterAll(async () => {
    await network?.close()
  })

  it('archives a confirmed batch at the next tick, with no settlement to wait for, and proves its jobs from R2', async () => {
    const response = await api.post('/v2/models/ppocr-cls/infer', job(3))
    expect(response.status, response.text).toBe(200)
    const jobId = (response.body.parameters as { job_id: string }).job_id
    // The tick that confirms the batch runs at its scheduled time, before the confirmation: the
    // batch is due at the next one, a minute later.
    await network.edge.runScheduled()
    const confirmed = (await api.get(`/api/jobs/${jobId}/attestation`)).body as unknown as JobView
    expect(confirmed.batch).toMatchObject({ status: 'confirmed', archivedAt: null })
    const next = new Date(Date.now() + MINUTE_MS)
    await network.edge.runScheduled(next)
    const archived = (await api.get(`/api/jobs/${jobId}/attestation`)).body as unknown as JobView
    expect(archived).toEqual({ ...confirmed, batch: { ...confirmed.batch, archivedAt: next.getTime() } })
    const chain = createPublicClient({ chain: foundry, transport: http(network.chain!.rpcUrl) })
    const a = archived.attestation
    const tuple = { ...a, price: BigInt(a.price), completedAt: BigInt(a.completedAt), seq: BigInt(archived.seq) }
    expect(await chain.readContract({ address: network.chain!.registryAddress, abi: attestationRegistryAbi, functionName: 'verifyLeafData', args: [archived.batch!.root, archived.proof!, tuple] })).toBe(true)
    const db = await network.edge.miniflare.getD1Database('DB')
    expect((await db.prepare('SELECT COUNT(*) AS n FROM attestations').first<{ n: number }>())!.n).toBe(0)
  })

  it('archives a batch of jobs recorded before job ids carried their time by listing them, and finds every job', async () => {
    // Such a batch, made here from the archived job's row: two jobs whose ids begin with random
    // bytes (here 0xff…, far in the future) and one whose id carries its minting time.
    const r2 = await network.edge.miniflare.getR2Bucket('MODELS')
    const [first] = (await r2.list({ prefix: 'attestation-batches/' })).objects
    const template = ((await (await r2.get(first!.key))!.json()) as { attestations: AttestationRow[] }).attestations[0]!
    const randomHex = (bytes: number) => Array.from(crypto.getRandomValues(new Uint8Array(bytes)), (b) => b.toString(16).padStart(2, '0')).join('')
    const mintedMs = template.accepted_at - 1_000
    const jobIds = [`0xff${randomHex(31)}`, `0x${mintedMs.toString(16).padStart(12, '0')}${randomHex(26)}`, `0xff${randomHex(31)}`]
    const rows: AttestationRow[] = jobIds.map((jobId, i) => ({ ...template, job_id: jobId, seq: 1_000 + i, batch_root: null }))
    const root = buildMerkleTree(batchLeaves(rows)).root
    const db = await network.edge.miniflare.getD1Database('DB')
    for (const row of rows) {
      await db
        .prepare(
          `INSERT INTO attestations (seq, job_id, model_hash, input_hash, output_hash, device, price_wei, completed_at, signature,
             chain_id, verifying_contract, device_id, accepted_at, batch_root) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .bind(row.seq, row.job_id, row.model_hash, row.input_hash, row.output_hash, row.device, row.price_wei, row.completed_at, row.signature, row.chain_id, row.verifying_contract, row.device_id, row.accepted_at, root)
        .run()
    }
    await db
      .prepare("INSERT INTO batches (root, from_seq, to_seq, count, status, recorded_at, confirmed_at) VALUES (?, 1000, 1002, 3, 'confirmed', ?, ?)")
      .bind(root, Date.now() - MINUTE_MS, Date.now() - MINUTE_MS)
      .run()

    await network.edge.runScheduled(new Date(Date.now() + MINUTE_MS))
    const batch = await db.prepare('SELECT archived_at, jobs_from_ms, jobs_to_ms FROM batches WHERE root = ?').bind(root).first<Record<string, number | null>>()
    expect(batch).toMatchObject({ archived_at: expect.any(Number), jobs_from_ms: mintedMs, jobs_to_ms: mintedMs })
    expect((await db.prepare('SELECT COUNT(*) AS n FROM archived_jobs WHERE from_seq = 1000').first<{ n: number }>())!.n).toBe(3)
    for (const [i, jobId] of jobIds.entries()) {
      const response = await api.get(`/api/jobs/${jobId}/attestation`)
      expect(response.status, response.text).toBe(200)
      expect(response.body).toMatchObject({ jobId, seq: 1_000 + i, batch: { root, archivedAt: expect.any(Number) }, proof: expect.any(Array) })
    }
  })
})
