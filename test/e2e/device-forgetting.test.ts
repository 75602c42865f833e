/**
 * The gateway forgets devices gone for DEVICE_FORGET_AFTER_SEC (run by the cron): they leave its
 * device table, and their retained status is cleared on the broker, which would otherwise keep one for
 * every device ever seen and replay them all at every reconnect. A device that comes back is
 * served again.
 */
import mqtt from 'mqtt'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { deviceStatusTopic, gatewayClientId } from '../../shared/src/index.js'
import type { LocalBroker } from '../../scripts/local/broker.js'
import { exampleInferRequest } from '../../scripts/local/example-input.js'
import { startLocalNetwork, type LocalNetwork } from '../../scripts/local/network.js'
import { waitFor } from '../../scripts/local/wait-for.js'
import { apiClient, BROKERS, readyDevices, waitForModelReady, type ApiClient } from './support.js'

describe.each(BROKERS)('forgetting devices gone for long ($name)', (brokerKind) => {
  let broker: LocalBroker
  let network: LocalNetwork
  let api: ApiClient

  beforeAll(async () => {
    broker = await brokerKind.start()
    network = await startLocalNetwork({
      broker,
      build: false,
      edgeVars: { DEVICE_FORGET_AFTER_SEC: '1' },
      agents: [{ deviceId: 'forgotten-device', models: 'ppocr-cls' }],
    })
    api = apiClient(network.edge.url, network.apiKey)
    await waitForModelReady(api, 'ppocr-cls')
  })
  afterAll(async () => {
    await network?.close()
    await broker?.close()
  })

  /** The retained status the broker holds for the device: what a new subscriber gets at once. */
  async function retainedStatus(deviceId: string): Promise<string | undefined> {
    const client = await mqtt.connectAsync(broker.tcpUrl, { clientId: gatewayClientId(`probe-${deviceId}-${Date.now()}`), reconnectPeriod: 0 })
    try {
      let retained: string | undefined
      client.on('message', (_topic, payload, packet) => {
        if (packet.retain) retained = payload.toString()
      })
      await client.subscribeAsync(deviceStatusTopic(deviceId), { qos: 1 })
      // Retained messages follow the SUBACK at once; a round trip through the broker (our own
      // publish coming back) shows they had their chance.
      const marker = `depinfer/v1/probe/${Date.now()}`
      await client.subscribeAsync(marker, { qos: 1 })
      const back = new Promise<void>((resolve) => client.on('message', (topic) => topic === marker && resolve()))
      await client.publishAsync(marker, 'x', { qos: 1 })
      await back
      return retained
    } finally {
      await client.endAsync(true)
    }
  }

  it('keeps a device that is there, forgets it once gone, and serves it again when it comes back', async () => {
    const [agent] = network.agents
    await network.edge.runScheduled()
    expect(await readyDevices(api, 'ppocr-cls')).toBe(1)
    expect(JSON.parse((await retainedStatus('forgotten-device'))!)).toMatchObject({ deviceId: 'forgotten-device', online: true })

    await agent!.stop()
    await waitFor('the device to be offline', async () => ((await readyDevices(api, 'ppocr-cls')) === 0 ? true : undefined), 20_000)
    // Still known (unavailable) until it has been gone for DEVICE_FORGET_AFTER_SEC.
    expect(JSON.parse((await retainedStatus('forgotten-device'))!)).toMatchObject({ online: false })
    expect((await api.post('/v2/repository/index', {})).body).toContainEqual(expect.objectContaining({ name: 'ppocr-cls', state: 'UNAVAILABLE' }))

    await new Promise((resolve) => setTimeout(resolve, 1_500))
    // The cron's tick; the gateway's clearing message reaches the broker on its own time after it.
    await waitFor('the forgotten device\'s status cleared on the broker', async () => {
      await network.edge.runScheduled()
      return (await retainedStatus('forgotten-device')) === undefined ? true : undefined
    }, 15_000)

    network.startAgent({ deviceId: 'forgotten-device', models: 'ppocr-cls' })
    await waitForModelReady(api, 'ppocr-cls')
    expect((await api.post('/v2/models/ppocr-cls/infer', exampleInferRequest(5))).status).toBe(200)
    expect(JSON.parse((await retainedStatus('forgotten-device'))!)).toMatchObject({ online: true })
  })
})
