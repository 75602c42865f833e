import { describe, expect, it } from 'vitest'
import { mqttMatches } from './testing/mqtt-matches.js'
import { deviceClientId, gatewayClientId, mayPublish, maySubscribe, principalOf, type BrokerPrincipal } from './acl.js'
import {
  ALL_DEVICE_HEARTBEATS,
  ALL_DEVICE_STATUS,
  deviceHeartbeatTopic,
  deviceJobsTopic,
  deviceStatusTopic,
  gatewayResultsFilter,
  gatewayResultsTopic,
  gatewaySyncTopic,
} from './topics.js'

const pi: BrokerPrincipal = { role: 'device', deviceId: 'pi' }
const gateway: BrokerPrincipal = { role: 'gateway', gatewayId: 'gw1' }


describe('client ids and principals', () => {
  it('names device and gateway clients by a fixed prefix', () => {
    expect(deviceClientId('pi')).toBe('depinfer-device-pi')
    expect(gatewayClientId('gw1')).toBe('depinfer-gateway-gw1')
  })

  it.each(['pi', 'pi-kitchen', 'a.b_c'])('principalOf(deviceClientId(%j)) is that device', (id) => {
    expect(principalOf(deviceClientId(id))).toEqual({ role: 'device', deviceId: id })
  })

  it.each(['gw1', 'edge-eu.1'])('principalOf(gatewayClientId(%j)) is that gateway', (id) => {
    expect(principalOf(gatewayClientId(id))).toEqual({ role: 'gateway', gatewayId: id })
  })

  it.each(['', 'mqttjs_1234', 'depinfer-pi', 'depinfer-devic-pi', 'Depinfer-device-pi', 'x-depinfer-device-pi', 'depinfer-gateway', 'depinfer-edge-gw1'])(
    'principalOf(%j) is undefined',
    (clientId) => {
      expect(principalOf(clientId)).toBeUndefined()
    },
  )

  it.each([
    'depinfer-device-',
    'depinfer-device-+',
    'depinfer-device-#',
    'depinfer-device-a/b',
    'depinfer-device-.pi',
    `depinfer-device-${'a'.repeat(65)}`,
    'depinfer-gateway-',
    'depinfer-gateway-+',
    'depinfer-gateway-gw/1',
  ])('principalOf(%j) is undefined: the id is not a valid topic level', (clientId) => {
    expect(principalOf(clientId)).toBeUndefined()
  })
})

describe('device publish', () => {
  it.each([
    ['its own status', deviceStatusTopic('pi')],
    ['its own heartbeat', deviceHeartbeatTopic('pi')],
    ["its own results topic of a gateway", gatewayResultsTopic('gw1', 'pi')],
    ["its own results topic of another gateway", gatewayResultsTopic('edge-eu.2', 'pi')],
  ])('may publish %s', (_case, topic) => {
    expect(mayPublish(pi, topic)).toBe(true)
  })

  it.each([
    ['its own jobs topic', deviceJobsTopic('pi')],
    ["another device's status", deviceStatusTopic('other')],
    ["another device's heartbeat", deviceHeartbeatTopic('other')],
    ["another device's jobs", deviceJobsTopic('other')],
    ['the status of a device whose id extends its own', deviceStatusTopic('pi2')],
    ['the status of a device whose id is a prefix of its own', deviceStatusTopic('p')],
    ["a gateway's sync topic", gatewaySyncTopic('gw1')],
    // A result's topic is what tells the gateway which device sent it.
    ["another device's results topic", gatewayResultsTopic('gw1', 'other')],
    ['the results topic of a device whose id extends its own', gatewayResultsTopic('gw1', 'pi2')],
    ["a gateway's results topic without a device", 'depinfer/v1/gateways/gw1/results'],
    ['a results topic with a wildcard gateway id', 'depinfer/v1/gateways/+/results/pi'],
    ['a results topic with a wildcard device id', 'depinfer/v1/gateways/gw1/results/+'],
    ['a results topic with an invalid gateway id', 'depinfer/v1/gateways/.x/results/pi'],
    ['a results topic with extra levels', 'depinfer/v1/gateways/gw1/results/pi/x'],
    ['outside the protocol root', 'other/devices/pi/status'],
    ['a different protocol version', 'depinfer/v2/devices/pi/status'],
    ['the root itself', 'depinfer/v1'],
  ])('may not publish %s', (_case, topic) => {
    expect(mayPublish(pi, topic)).toBe(false)
  })
})

describe('device subscribe', () => {
  it('may subscribe to its own jobs', () => {
    expect(maySubscribe(pi, deviceJobsTopic('pi'))).toBe(true)
  })

  it.each([
    ["another device's jobs", deviceJobsTopic('other')],
    ['its own status', deviceStatusTopic('pi')],
    ['its own heartbeat', deviceHeartbeatTopic('pi')],
    ['every device status', ALL_DEVICE_STATUS],
    ['every device heartbeat', ALL_DEVICE_HEARTBEATS],
    ['every job', 'depinfer/v1/devices/+/jobs'],
    ['a multi-level wildcard under its own id', 'depinfer/v1/devices/pi/#'],
    ['everything', '#'],
    ['the protocol root', 'depinfer/v1/#'],
    ["a gateway's results", gatewayResultsFilter('gw1')],
    ['its own results topic', gatewayResultsTopic('gw1', 'pi')],
  ])('may not subscribe to %s', (_case, filter) => {
    expect(maySubscribe(pi, filter)).toBe(false)
  })

  // Regression: when principalOf did not validate the id, a client connecting as
  // `depinfer-device-+` became the device "+", whose "own jobs topic" is the wildcard filter
  // `depinfer/v1/devices/+/jobs`: it could read every device's jobs.
  it('does not let a device client id with a wildcard subscribe to other devices\' jobs', () => {
    const filter = 'depinfer/v1/devices/+/jobs'
    expect(mqttMatches(filter, deviceJobsTopic('victim'))).toBe(true)
    const principal = principalOf('depinfer-device-+')
    expect(principal === undefined || !maySubscribe(principal, filter)).toBe(true)
  })
})

describe('gateway', () => {
  it.each([
    deviceJobsTopic('pi'),
    deviceStatusTopic('pi'),
    deviceHeartbeatTopic('pi'),
    gatewayResultsTopic('gw1', 'pi'),
    gatewayResultsTopic('other-gw', 'pi'),
    gatewaySyncTopic('gw1'),
    'depinfer/v1/anything/else',
  ])('may publish %s', (topic) => {
    expect(mayPublish(gateway, topic)).toBe(true)
  })

  it.each([
    ALL_DEVICE_STATUS,
    ALL_DEVICE_HEARTBEATS,
    gatewayResultsFilter('gw1'),
    gatewaySyncTopic('gw1'),
    deviceJobsTopic('pi'),
    'depinfer/v1/#',
  ])('may subscribe to %s', (filter) => {
    expect(maySubscribe(gateway, filter)).toBe(true)
  })

  it.each(['depinfer/v1', 'depinfer/v10/x', 'depinfer/v2/devices/pi/jobs', 'other/topic', '$SYS/broker/clients', '#', '+/v1/devices/pi/jobs', '/depinfer/v1/x'])(
    'may neither publish nor subscribe outside depinfer/v1/: %s',
    (topic) => {
      expect(mayPublish(gateway, topic)).toBe(false)
      expect(maySubscribe(gateway, topic)).toBe(false)
    },
  )
})
