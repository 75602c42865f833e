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
import { answerOnEvery, apiClient, BROKERS, hedgeableDeadlineMs, LONG_JOB_DEADLINE_MS, longKeepaliveConfig, observeJobs, waitForModelReady, type ApiClient } from './support.js'

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
    // The frozen device stays online through the test: nothing but a hedge sends its job elsewhere in time.
    const configPath = longKeepaliveConfig()
    network = await startLocalNetwork({
      broker,
      build: false,
      agents: DEVICES.map((deviceId) => ({ deviceId, models: 'ppocr-det', configPath })),
      edgeVars: { JOB_DEADLINE_MS: String(LONG_JOB_DEADLINE_MS) },
    })
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

  // The warm-up's thirty-odd detector jobs took 107 s and 134 s on a loaded machine (load average
  // 11 on 2 cores), and the job 41 s more.
  it('sends a job to a third device when the hedge device dies while the first one is frozen', { timeout: 300_000 }, async () => {
    // Enough answered jobs from each device for the gateway to know its p95.
    const slowestMs = await answerOnEvery(api, 'ppocr-det', detectorJob(), DEVICES, jobsSeen)
    // The frozen device's budget is half of it: 15 s at least, more on a slow machine.
    const deadlineMs = hedgeableDeadlineMs(slowestMs)

    const before = jobsSeen.length
    const started = Date.now()
    const answer = api.post('/v2/models/ppocr-det/infer', detectorJob(deadlineMs))
    const frozen = await waitFor('the job on the wire', async () => jobsSeen[before], 10_000, 5)
    agent(frozen).child.kill('SIGSTOP')
    try {
      // Whatever comes next, hedge or (if there was none) the retry at the budget's end.
      const hedgedTo = await waitFor('the hedge on the wire', async () => jobsSeen[before + 1], deadlineMs, 5)
      await agent(hedgedTo).kill()
      const response = await answer
      const elapsedMs = Date.now() - started
      expect(response.status, response.text).toBe(200)
      const answeredBy = (response.body.parameters as { device_id: string }).device_id
      expect(DEVICES.filter((d) => d !== frozen && d !== hedgedTo)).toEqual([answeredBy])
      expect(response.body.parameters).toMatchObject({ attempts: 3 })
      // Before the frozen device's budget, half the deadline, ran out: a hedge, not a retry.
      expect(elapsedMs).toBeLessThan(deadlineMs / 2)
    } finally {
      agent(frozen).child.kill('SIGCONT')
    }
  })
})
