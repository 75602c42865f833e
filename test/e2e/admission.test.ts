/**
 * Admission under overload, on the real network. The device is frozen (SIGSTOP) so that jobs
 * stay in flight for as long as the test needs, whatever the machine's speed:
 * - one account's jobs (any of its keys) past its share of MAX_INFLIGHT_BYTES are refused at once
 *   with 429, and past the whole limit any key gets 503 gateway-busy; neither reaches the device;
 * - a job whose device would only get to it after its deadline, at the device's own time per
 *   job, is refused at once with 503 devices-busy and Retry-After, while a job with time to
 *   wait is accepted; every accepted job is answered once the device runs again.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startLocalNetwork, type LocalNetwork } from '../../scripts/local/network.js'
import { waitFor } from '../../scripts/local/wait-for.js'
import { apiClient, observeJobs, waitForModelReady, type ApiClient, type ApiResponse } from './support.js'

/** MAX_INFLIGHT_BYTES here: a key's share is half, 2,000,000 bytes. */
const MAX_INFLIGHT_BYTES = 4_000_000
/** A classifier input of 1,920,384 bytes: one fits a key's share, two do not; two keys' fit the limit, three do not. */
const WIDE = 3_334
const wideJob = { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3, 48, WIDE], data: new Array(3 * 48 * WIDE).fill(0.5) }] }
const mib = (bytes: number) => (bytes / 1024 / 1024).toFixed(2).replace('.', '\\.')
/** A small one (9,216 bytes): 200 fit a key's share. */
const smallJob = (timeoutMs: number) => ({
  inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3, 48, 16], data: Array.from({ length: 3 * 48 * 16 }, (_, i) => (i % 7) / 7) }],
  parameters: { timeout_ms: timeoutMs },
})

function expectRefusal(response: ApiResponse, status: number, type: string, detail: RegExp): void {
  expect(response.status, response.text).toBe(status)
  expect(response.headers.get('content-type')).toMatch(/^application\/problem\+json/)
  expect(response.body.type).toBe(`urn:depinfer:problem:${type}`)
  expect(response.body.detail).toMatch(detail)
  expect(Number(response.headers.get('retry-after'))).toBeGreaterThanOrEqual(1)
}

describe('admission of jobs under overload', () => {
  let network: LocalNetwork
  let api: ApiClient
  let observer: Awaited<ReturnType<typeof observeJobs>>
  const frozen = () => network.agents[0]!.child.kill('SIGSTOP')
  const thawed = () => network.agents[0]!.child.kill('SIGCONT')
  /** Waits until the broker has carried `count` jobs to the device since the test started watching. */
  const jobsOnTheWire = (count: number) => waitFor(`${count} jobs on the wire`, async () => (observer.devices.length >= count ? true : undefined), 10_000, 5)

  beforeAll(async () => {
    network = await startLocalNetwork({
      build: false,
      agents: [{ deviceId: 'admission-device', models: 'ppocr-cls' }],
      edgeVars: { MAX_INFLIGHT_BYTES: String(MAX_INFLIGHT_BYTES) },
    })
    api = apiClient(network.edge.url, network.apiKey)
    await waitForModelReady(api, 'ppocr-cls')
    observer = await observeJobs(network.broker.tcpUrl, 'admission-observer')
  })
  afterAll(async () => {
    thawed()
    await observer?.close()
    await network?.close()
  })

  it('refuses an account past its share of the in-flight bytes (429), whichever of its keys asks, and anyone past the whole limit (503); nothing refused reaches the device', async () => {
    const [b, c] = await Promise.all(['admission-b', 'admission-c'].map(async (label) => apiClient(network.edge.url, await network.edge.createApiKey(label))))
    // A key the first key makes is of its account: it shares the account's share.
    const made = await api.post('/api/keys', { label: 'admission-sibling' })
    expect(made.status, made.text).toBe(201)
    const sibling = apiClient(network.edge.url, made.body.key as string)
    const seen = observer.devices.length
    frozen()
    try {
      const first = api.post('/v2/models/ppocr-cls/infer', wideJob)
      await jobsOnTheWire(seen + 1)
      const wideBytes = 3 * 48 * WIDE * 4
      for (const client of [api, sibling]) {
        expectRefusal(
          await client.post('/v2/models/ppocr-cls/infer', wideJob),
          429,
          'too-many-jobs-in-flight',
          new RegExp(`this account's jobs in flight hold ${mib(wideBytes)} MiB of inputs; this job's ${mib(wideBytes)} MiB would pass its share of ${mib(MAX_INFLIGHT_BYTES / 2)} MiB`),
        )
      }
      const second = b!.post('/v2/models/ppocr-cls/infer', wideJob)
      await jobsOnTheWire(seen + 2)
      expectRefusal(
        await c!.post('/v2/models/ppocr-cls/infer', wideJob),
        503,
        'gateway-busy',
        new RegExp(`the gateway holds ${mib(2 * wideBytes)} MiB of jobs' inputs in flight; this job's ${mib(wideBytes)} MiB would pass its limit of ${mib(MAX_INFLIGHT_BYTES)} MiB \\(MAX_INFLIGHT_BYTES\\)`),
      )
      thawed()
      for (const response of await Promise.all([first, second])) expect(response.status, response.text).toBe(200)
      expect(observer.devices.length).toBe(seen + 2)
      // With room again, the refused keys get answers.
      expect((await c!.post('/v2/models/ppocr-cls/infer', wideJob)).status).toBe(200)
    } finally {
      thawed()
    }
  })

  it('refuses at once a job that would wait past its deadline behind the jobs queued at the device (503 devices-busy), accepts one with time to wait', async () => {
    // The device's own time per job of this kind, as its answers report it (infer_ms shared by
    // batch_jobs): the gateway's figure is an average of these, between their least and most.
    const serviceMs: number[] = []
    for (let i = 0; i < 12; i++) {
      const response = await api.post('/v2/models/ppocr-cls/infer', smallJob(30_000))
      expect(response.status).toBe(200)
      const { infer_ms: inferMs, batch_jobs: batchJobs } = response.body.parameters as { infer_ms: number; batch_jobs: number }
      serviceMs.push(inferMs / batchJobs)
    }
    // A deadline the device meets alone, but not behind `queued` jobs of its least time each.
    const shortMs = Math.ceil(2 * Math.max(...serviceMs)) + 1
    const queued = Math.min(200, Math.ceil(shortMs / Math.max(Math.min(...serviceMs), 0.01)))
    const seen = observer.devices.length
    frozen()
    try {
      const waiting = Array.from({ length: queued }, () => api.post('/v2/models/ppocr-cls/infer', smallJob(30_000)))
      await jobsOnTheWire(seen + queued)
      const refused = await api.post('/v2/models/ppocr-cls/infer', smallJob(shortMs))
      expectRefusal(refused, 503, 'devices-busy', /^every device serving ppocr-cls has a queue: with this job the shortest would take about [0-9.]+ s, past the [0-9.]+ s the job could wait there/)
      expect(refused.body.field).toBe('model')
      const patient = api.post('/v2/models/ppocr-cls/infer', smallJob(30_000))
      await jobsOnTheWire(seen + queued + 1)
      thawed()
      for (const response of await Promise.all([...waiting, patient])) expect(response.status, response.text).toBe(200)
      expect(observer.devices.length).toBe(seen + queued + 1)
    } finally {
      thawed()
    }
  })
})
