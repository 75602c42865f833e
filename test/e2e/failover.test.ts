/**
 * Faults, produced for real: a device process killed (SIGKILL) or frozen (SIGSTOP) while it holds
 * a job, every device frozen, the broker restarted, and no device left at all. The caller must
 * always get exactly one answer: the result from another device, or a problem with Retry-After.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { AgentProcess } from '../../scripts/local/agent-process.js'
import type { ChildProcess } from 'node:child_process'
import type { LocalBroker } from '../../scripts/local/broker.js'
import { exampleInferRequest } from '../../scripts/local/example-input.js'
import { startLocalNetwork, type LocalNetwork } from '../../scripts/local/network.js'
import { waitFor } from '../../scripts/local/wait-for.js'
import { answerOnEvery, apiClient, BROKERS, hedgeableDeadlineMs, LONG_JOB_DEADLINE_MS, longKeepaliveConfig, observeJobs, readyDevices, waitForModelReady, type ApiClient } from './support.js'

/** A detector job big enough to still be running when the test strikes (~0.5 s here). */
const slowJob = (timeoutMs?: number) => ({
  inputs: [{ name: 'x', shape: [1, 3, 640, 640], datatype: 'FP32', data: new Array(3 * 640 * 640).fill(0.25) }],
  ...(timeoutMs && { parameters: { timeout_ms: timeoutMs } }),
})
const MODELS = 'ppocr-cls,ppocr-det'

describe.each(BROKERS)('failover through $name', (brokerKind) => {
  let broker: LocalBroker
  let network: LocalNetwork
  let api: ApiClient
  let observer: Awaited<ReturnType<typeof observeJobs>>
  /** Device ids in the order jobs were published to them (what the broker carried). */
  let jobsSeen: string[] = []
  /**
   * The agents' config: a device frozen in the hedge case stays online through it (no retry
   * sends its job elsewhere before the hedge). The other cases end their freezes in seconds.
   */
  let configPath: string

  const agent = (deviceId: string): AgentProcess => network.agents.filter((a) => a.deviceId === deviceId).at(-1)!
  const devicesOnline = async () => ((await (await fetch(`${network.edge.url}/v2/health/ready`)).json()) as { devices_online: number }).devices_online
  const nextJobDevice = () => {
    const seen = jobsSeen.length
    return waitFor('a job on the wire', async () => jobsSeen[seen], 10_000, 5)
  }

  beforeAll(async () => {
    broker = await brokerKind.start()
    configPath = longKeepaliveConfig()
    network = await startLocalNetwork({
      broker,
      build: false,
      agents: [{ deviceId: 'device-a', models: MODELS, configPath }, { deviceId: 'device-b', models: MODELS, configPath }],
      // The hedge case's deadline is sized to the machine: past the default 30 s on a loaded one.
      edgeVars: { JOB_DEADLINE_MS: String(LONG_JOB_DEADLINE_MS) },
    })
    api = apiClient(network.edge.url, network.apiKey)
    await waitForModelReady(api, 'ppocr-det')
    await waitFor('two devices online', async () => ((await devicesOnline()) === 2 ? true : undefined))
    observer = await observeJobs(broker.tcpUrl, 'test-observer')
    jobsSeen = observer.devices
  })
  afterAll(async () => {
    for (const a of network?.agents ?? []) a.child.kill('SIGCONT')
    await observer?.close()
    await network?.close()
    await broker?.close()
  })

  // Through one broker: what it checks is when the gateway hedges, the same over either broker
  // (as hedging.test.ts), and its warm-up of twenty detector jobs makes it the file's slowest case
  // (a minute or more on a loaded machine, as in hedging.test.ts).
  it.runIf(brokerKind === BROKERS[0])('hedges a job whose device froze: the other device answers soon after the first one\'s p95, not at half the deadline', { timeout: 300_000 }, async () => {
    // Enough answered jobs from each device for the gateway to know its p95 (eight at least).
    // First in the file: no slow answer from another case's frozen device is among them.
    const slowestMs = await answerOnEvery(api, 'ppocr-det', slowJob(), ['device-a', 'device-b'], jobsSeen)
    // Without a hedge, the retry would come only after half of it (30 s at least).
    const deadlineMs = hedgeableDeadlineMs(slowestMs)

    const started = Date.now()
    const answer = api.post('/v2/models/ppocr-det/infer', slowJob(deadlineMs))
    const victim = await nextJobDevice()
    agent(victim).child.kill('SIGSTOP')
    try {
      const response = await answer
      const elapsedMs = Date.now() - started
      expect(response.status, response.text).toBe(200)
      expect(response.body.parameters).toMatchObject({ attempts: 2 })
      expect((response.body.parameters as { device_id: string }).device_id).not.toBe(victim)
      expect(elapsedMs).toBeLessThan(deadlineMs / 2)
    } finally {
      agent(victim).child.kill('SIGCONT')
    }
  })

  it('has an input one device refuses confirmed by the other before answering 422; both keep serving', async () => {
    await expect.poll(() => readyDevices(api, 'ppocr-det'), { timeout: 30_000 }).toBe(2)
    const seen = jobsSeen.length
    // Valid by the metadata (dynamic H and W), but the detector needs multiples of 32.
    const data = new Array(3 * 40 * 40).fill(0.5)
    const rejected = await api.post('/v2/models/ppocr-det/infer', { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3, 40, 40], data }] })
    expect(rejected.status, rejected.text).toBe(422)
    expect(rejected.body).toMatchObject({ field: 'inputs', detail: expect.stringContaining('onnxruntime') })
    await waitFor('both jobs seen on the wire', async () => (jobsSeen.length >= seen + 2 ? true : undefined), 5_000, 10)
    expect(new Set(jobsSeen.slice(seen))).toEqual(new Set(['device-a', 'device-b']))
    // Neither is held to have lied (a suspect device is not counted ready), and both serve.
    expect(await readyDevices(api, 'ppocr-det')).toBe(2)
    expect((await api.post('/v2/models/ppocr-det/infer', { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3, 32, 32], data: new Array(3 * 32 * 32).fill(0.5) }] })).status).toBe(200)
  })

  it('retries on the other device when the one running the job is killed', async () => {
    const answer = api.post('/v2/models/ppocr-det/infer', slowJob())
    const victim = await nextJobDevice()
    await agent(victim).kill()
    const response = await answer
    expect(response.status).toBe(200)
    expect(response.body.parameters).toMatchObject({ attempts: 2 })
    expect((response.body.parameters as { device_id: string }).device_id).not.toBe(victim)
    // Bring the device back for the next cases.
    network.startAgent({ deviceId: victim, models: MODELS, configPath })
    await waitFor('the device to return', async () => ((await devicesOnline()) === 2 ? true : undefined), 30_000)
    await waitFor('its models to load', async () => {
      const meta = await api.get('/v2/repository/index')
      return meta.status !== 0 && (await api.post('/v2/models/ppocr-det/infer', slowJob())).status === 200 ? true : undefined
    })
  })

  it('retries on the other device when the chosen one hangs, within the deadline', async () => {
    // A deadline whose second half, the retry's budget, holds four times what a job takes on this
    // machine (6 s at least): a loaded one took 2.2 s of 3 s for the retry's run, and the retry may
    // be a restarted device's first, cold run.
    const aloneFrom = Date.now()
    expect((await api.post('/v2/models/ppocr-det/infer', slowJob())).status).toBe(200)
    const deadlineMs = Math.max(6_000, 8 * (Date.now() - aloneFrom))
    const answer = api.post('/v2/models/ppocr-det/infer', slowJob(deadlineMs))
    const victim = await nextJobDevice()
    agent(victim).child.kill('SIGSTOP')
    try {
      const response = await answer
      expect(response.status).toBe(200)
      expect(response.body.parameters).toMatchObject({ attempts: 2 })
      expect((response.body.parameters as { device_id: string }).device_id).not.toBe(victim)
      // Timed as the deadline is, from the job's dispatch (gateway_ms): the caller's clock also
      // counts sending and reading 5 MB of JSON (6,116 ms for a job answered in time, on a
      // loaded machine).
      expect((response.body.parameters as { gateway_ms: number }).gateway_ms).toBeLessThan(deadlineMs)
    } finally {
      agent(victim).child.kill('SIGCONT')
    }
  })

  it('answers 504 with Retry-After when every device hangs, and never waits past the deadline', async () => {
    for (const a of network.agents) a.child.kill('SIGSTOP')
    try {
      const started = Date.now()
      const response = await api.post('/v2/models/ppocr-cls/infer', { ...exampleInferRequest(1), parameters: { timeout_ms: 1_500 } })
      const elapsed = Date.now() - started
      expect(response.status).toBe(504)
      expect(response.headers.get('retry-after'), response.text).toMatch(/^\d+$/)
      expect(response.body).toMatchObject({ status: 504, type: 'urn:depinfer:problem:device-timeout' })
      expect(elapsed).toBeGreaterThanOrEqual(1_400)
      expect(elapsed).toBeLessThan(4_000)
    } finally {
      for (const a of network.agents) a.child.kill('SIGCONT')
    }
    expect((await api.post('/v2/models/ppocr-cls/infer', exampleInferRequest(2))).status).toBe(200)
  })

  it('does not blame devices for jobs that timed out while the broker was gone: they serve as soon as it is back', async () => {
    // Both devices frozen, so the jobs stay unanswered; then the broker goes away with them.
    for (const a of network.agents) a.child.kill('SIGSTOP')
    const { tcpPort, wsPort } = broker
    let statuses: number[] = []
    try {
      const sent = jobsSeen.length
      // Four jobs with 1.5 s per attempt: enough timeouts on each device (3) to make it suspect.
      const answers = Promise.all(Array.from({ length: 4 }, (_, i) => api.post('/v2/models/ppocr-cls/infer', { ...exampleInferRequest(10 + i), parameters: { timeout_ms: 3_000 } })))
      await waitFor('the jobs on the wire', async () => (jobsSeen.length >= sent + 4 ? true : undefined), 5_000, 5)
      await broker.close()
      statuses = (await answers).map((a) => a.status)
    } finally {
      for (const a of network.agents) a.child.kill('SIGCONT')
      broker = await brokerKind.start({ tcpPort, wsPort })
    }
    // aedes: the jobs time out (504). Mosquitto publishes the devices' last wills as it shuts
    // down, so the jobs end at once as lost with their devices (503).
    for (const status of statuses) expect([503, 504]).toContain(status)
    await waitFor('both devices back', async () => ((await devicesOnline()) === 2 ? true : undefined), 30_000)
    // Not 503 "left out of scheduling after repeated failures" for the next minute.
    const next = await api.post('/v2/models/ppocr-cls/infer', exampleInferRequest(20))
    expect(next.status, next.text).toBe(200)
  })

  it.runIf(brokerKind.name === 'mosquitto')('does not blame devices for jobs that timed out while the broker hung without closing its sockets', async () => {
    // A frozen broker keeps every socket open, as a vanished host does until keepalives run out:
    // the edge's link still looks up, but nothing arrives on it.
    const mosquitto = (broker as LocalBroker & { process: ChildProcess }).process
    const { tcpPort, wsPort } = broker
    mosquitto.kill('SIGSTOP')
    try {
      // Four jobs, each timing out on both devices (1.5 s each): enough to make both suspect.
      const answers = await Promise.all(Array.from({ length: 4 }, (_, i) => api.post('/v2/models/ppocr-cls/infer', { ...exampleInferRequest(50 + i), parameters: { timeout_ms: 3_000 } })))
      expect(answers.map((a) => a.status)).toEqual([504, 504, 504, 504])
      // Still both routable (asked while the broker is frozen: after it comes back, its resent
      // jobs are answered late, which would forgive the devices anyway).
      const model = await api.get('/v2/models/ppocr-cls')
      expect(model.body.parameters, model.text).toMatchObject({ ready_devices: 2 })
    } finally {
      // Gone for good, and the jobs with it (no late answers to forgive the devices).
      const exited = new Promise((resolve) => mosquitto.once('exit', resolve))
      mosquitto.kill('SIGKILL')
      await exited
      broker = await brokerKind.start({ tcpPort, wsPort })
    }
    await waitFor('both devices back', async () => ((await devicesOnline()) === 2 ? true : undefined), 30_000)
    const next = await api.post('/v2/models/ppocr-cls/infer', exampleInferRequest(60))
    expect(next.status, next.text).toBe(200)
  })

  it('recovers by itself after the broker restarts, forgetting a device that left meanwhile', async () => {
    // device-c alone serves the recognizer, so what the edge believes of it shows in that model.
    await network.startAgent({ deviceId: 'device-c', models: 'ppocr-rec' }).started
    await waitForModelReady(api, 'ppocr-rec')
    const { tcpPort, wsPort } = broker
    await broker.close()
    const during = await api.post('/v2/models/ppocr-cls/infer', exampleInferRequest(3))
    expect([503, 504]).toContain(during.status)
    expect(during.headers.get('retry-after')).toMatch(/^\d+$/)
    // device-c leaves while there is no broker to tell: no offline status, no last will, and the
    // new broker never hears of it. Once the edge is linked again, only what that broker vouches
    // for counts: device-c is gone (not online for its remaining seconds of staleness), so a
    // recognizer job is refused at once instead of waiting out a timeout on it.
    await agent('device-c').stop()
    broker = await brokerKind.start({ tcpPort, wsPort })
    await waitFor('the edge linked to the new broker', async () => {
      const health = (await (await fetch(`${network.edge.url}/v2/health/ready`)).json()) as { broker_connected: boolean }
      return health.broker_connected || undefined
    })
    expect((await api.get('/v2/models/ppocr-rec/ready')).status).toBe(400)
    const rec = await api.post('/v2/models/ppocr-rec/infer', { inputs: [{ name: 'x', shape: [1, 3, 48, 320], datatype: 'FP32', data: new Array(3 * 48 * 320).fill(0.5) }] })
    expect(rec.status).toBe(503)
    expect(rec.body).toMatchObject({ type: 'urn:depinfer:problem:no-capacity' })
    const recovered = await waitFor(
      'inference to work again',
      async () => {
        const response = await api.post('/v2/models/ppocr-cls/infer', exampleInferRequest(4))
        return response.status === 200 ? response : undefined
      },
      30_000,
      250,
    )
    expect(recovered.body.id).toBe('example-4')
  })

  it('answers 503 with Retry-After when no device serves the model, and reports not ready', async () => {
    await Promise.all(network.agents.map((a) => a.stop()))
    const response = await api.post('/v2/models/ppocr-cls/infer', exampleInferRequest(5))
    expect(response.status).toBe(503)
    expect(response.headers.get('retry-after')).toMatch(/^\d+$/)
    expect(response.body).toMatchObject({ status: 503, type: 'urn:depinfer:problem:no-capacity', field: 'model' })
    const ready = await fetch(`${network.edge.url}/v2/health/ready`)
    expect(ready.status).toBe(400)
    expect(await ready.json()).toMatchObject({ ready: false, devices_online: 0 })
    expect((await api.get('/v2/models/ppocr-cls/ready')).status).toBe(400)
    const index = await api.post('/v2/repository/index')
    expect(index.body).toEqual(expect.arrayContaining([{ name: 'ppocr-cls', version: '1', state: 'UNAVAILABLE', reason: 'no device online' }]))
  })
})
