/**
 * The embedded broker (scripts/local/broker.ts) enforces the protocol's ACL with real MQTT
 * clients: a device answers only on its own results topic (the topic is how the gateway knows
 * who sent a result), retains only its status, and cannot send a message past the protocol's
 * size limit. A refused publish disconnects the client, as Mosquitto does.
 */
import mqtt, { type MqttClient } from 'mqtt'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startLocalBroker, type LocalBroker } from '../scripts/local/broker.js'
import {
  deviceClientId,
  deviceHeartbeatTopic,
  deviceStatusTopic,
  gatewayClientId,
  gatewayResultsFilter,
  gatewayResultsTopic,
  MAX_MESSAGE_BYTES,
} from '../shared/src/index.js'

describe('the embedded broker ACL', () => {
  let broker: LocalBroker
  let gateway: MqttClient
  const received: { topic: string; bytes: number; retain: boolean }[] = []

  beforeAll(async () => {
    broker = await startLocalBroker()
    gateway = await mqtt.connectAsync(broker.tcpUrl, { clientId: gatewayClientId('acl-test') })
    gateway.on('message', (topic, payload, packet) => received.push({ topic, bytes: payload.length, retain: packet.retain }))
    await gateway.subscribeAsync([gatewayResultsFilter('acl-test'), deviceStatusTopic('+'), deviceHeartbeatTopic('+')], { qos: 1 })
  })
  afterAll(async () => {
    await gateway?.endAsync(true)
    await broker?.close()
  })

  const device = (id: string) => mqtt.connectAsync(broker.tcpUrl, { clientId: deviceClientId(id), reconnectPeriod: 0 })
  /** Publishes and reports whether the broker kept the client connected (a refusal closes it). */
  const publishKeepsConnection = async (client: MqttClient, topic: string, payload: Buffer, retain = false) => {
    const closed = new Promise<true>((resolve) => client.once('close', () => resolve(true)))
    const acked = client.publishAsync(topic, payload, { qos: 1, retain }).then(() => false, () => true)
    return !(await Promise.race([closed, acked]))
  }
  const delivered = async (topic: string) => {
    // The gateway's marker on its own results filter goes out after the publish under test.
    const marker = gatewayResultsTopic('acl-test', `marker-${received.length}`)
    await gateway.publishAsync(marker, 'm', { qos: 1 })
    await expect.poll(() => received.some((m) => m.topic === marker)).toBe(true)
    return received.filter((m) => m.topic === topic)
  }

  it("delivers a device's result on its own results topic", async () => {
    const pi = await device('pi')
    expect(await publishKeepsConnection(pi, gatewayResultsTopic('acl-test', 'pi'), Buffer.from('r1'))).toBe(true)
    expect(await delivered(gatewayResultsTopic('acl-test', 'pi'))).toHaveLength(1)
    await pi.endAsync(true)
  })

  it("refuses a result on another device's results topic, and disconnects the sender", async () => {
    const rogue = await device('rogue')
    expect(await publishKeepsConnection(rogue, gatewayResultsTopic('acl-test', 'victim'), Buffer.from('forged'))).toBe(false)
    expect(await delivered(gatewayResultsTopic('acl-test', 'victim'))).toHaveLength(0)
    await rogue.endAsync(true)
  })

  it('refuses a retained result (only statuses are retained)', async () => {
    const pi = await device('pi-retain')
    expect(await publishKeepsConnection(pi, gatewayResultsTopic('acl-test', 'pi-retain'), Buffer.from('stale'), true)).toBe(false)
    await pi.endAsync(true)
    const late = await mqtt.connectAsync(broker.tcpUrl, { clientId: gatewayClientId('acl-late') })
    const replayed: string[] = []
    late.on('message', (topic) => replayed.push(topic))
    await late.subscribeAsync(gatewayResultsFilter('acl-test'), { qos: 1 })
    await new Promise((resolve) => setTimeout(resolve, 200))
    expect(replayed).toEqual([])
    await late.endAsync(true)

    const status = await device('pi-status')
    expect(await publishKeepsConnection(status, deviceStatusTopic('pi-status'), Buffer.from('{}'), true)).toBe(true)
    await status.endAsync(true)
  })

  it('refuses a message past MAX_MESSAGE_BYTES and delivers one at the limit', async () => {
    const pi = await device('pi-big')
    const topic = gatewayResultsTopic('acl-test', 'pi-big')
    expect(await publishKeepsConnection(pi, topic, Buffer.alloc(MAX_MESSAGE_BYTES))).toBe(true)
    expect(await publishKeepsConnection(pi, topic, Buffer.alloc(MAX_MESSAGE_BYTES + 1))).toBe(false)
    expect((await delivered(topic)).map((m) => m.bytes)).toEqual([MAX_MESSAGE_BYTES])
    await pi.endAsync(true)
  })
})
