/**
 * Hedged requests with three devices: a hedge does not use up the job's retry. The device
 * holding a job freezes (SIGSTOP), the job is hedged to a second device, and that one dies
 * (SIGKILL) while it runs it: the third device answers, long before the frozen device's budget
 * (half the deadline) would have run out.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { AgentProcess } from '../../scripts/local/agent-process.js'
import type { LocalBroker } from '../../scripts/local/broker.js'
import { startLocalNetwork, type LocalNetwork } from '../../scripts/local/network.js'
import { waitFor } from '../../scripts/local/wait-for.js'
import { answerOnEvery, apiClient, BROKERS, observeJobs, waitForModelReady, type ApiClient } from './support.js'

/** A detector job that runs ~0.5 s here: long enough to strike while a device holds it. */
const detectorJob = (timeoutMs?: number) => ({
  inputs: [{ name: 'x', shape: [1, 3, 640, 640], datatype: 'FP32', data: new Array(3 * 640 * 640).fill(0.25) }],
  ...(timeoutMs && { parameters: { timeout_ms: timeoutMs } }),
})
const DEVICES = ['device-a', 'device-b', 'device-c']

// One broker is enough: what is under test is the Gateway's dispatch, the same over either.
describe(`hedging through ${BROKERS[0]!.name}`, () => {
  let broker: LocalBroker
  let network: LocalNetwork
  let api: ApiClient
  let observer: Awaited<ReturnType<typeof observeJobs>>
  /** Device ids in the order jobs were published to them. */
  let jobsSeen: string[] = []
  const agent = (deviceId: string): AgentProcess => network.agents.find((a) => a.deviceId === deviceId)!

  beforeAll(async () => {
    broker = await BROKERS[0]!.start()
    network = await startLocalNetwork({ broker, build: false, agents: DEVICES.map((deviceId) => ({ deviceId, models: 'ppocr-det' })) })
    api = apiClient(network.edge.url, network.apiKey)
    await waitForModelReady(api, 'ppocr-det')
    await waitFor('three devices ready', async () => {
      const body = (await api.get('/v2/models/ppocr-det')).body as { parameters?: { ready_devices?: number } }
      return body.parameters?.ready_devices === 3 ? true : undefined
    }, 60_000)
    observer = await observeJobs(broker.tcpUrl, 'hedging-observer')
    jobsSeen = observer.devices
  })
  afterAll(async () => {
    for (const a of network?.agents ?? []) a.child.kill('SIGCONT')
    await observer?.close()
    await network?.close()
    await broker?.close()
  })

  it('sends a job to a third device when the hedge device dies while the first one is frozen', async () => {
    // Enough answered jobs from each device for the gateway to know its p95.
    await answerOnEvery(api, 'ppocr-det', detectorJob(), DEVICES, jobsSeen)

    const before = jobsSeen.length
    const started = Date.now()
    const answer = api.post('/v2/models/ppocr-det/infer', detectorJob(30_000))
    const frozen = await waitFor('the job on the wire', async () => jobsSeen[before], 10_000, 5)
    agent(frozen).child.kill('SIGSTOP')
    try {
      const hedgedTo = await waitFor('the hedge on the wire', async () => jobsSeen[before + 1], 10_000, 5)
      await agent(hedgedTo).kill()
      const response = await answer
      const elapsedMs = Date.now() - started
      expect(response.status, response.text).toBe(200)
      const answeredBy = (response.body.parameters as { device_id: string }).device_id
      expect(DEVICES.filter((d) => d !== frozen && d !== hedgedTo)).toEqual([answeredBy])
      expect(response.body.parameters).toMatchObject({ attempts: 3 })
      // The frozen device's budget is half the deadline: 15 s.
      expect(elapsedMs).toBeLessThan(10_000)
    } finally {
      agent(frozen).child.kill('SIGCONT')
    }
  })
})
