import { describe, expect, it } from 'vitest'
import { mqttMatches } from './testing/mqtt-matches.js'
import {
  ALL_DEVICE_HEARTBEATS,
  ALL_DEVICE_STATUS,
  deviceHeartbeatTopic,
  deviceJobsTopic,
  deviceStatusTopic,
  gatewayResultsFilter,
  gatewayResultsTopic,
  gatewaySyncTopic,
  isGatewayResultsTopic,
  isValidId,
  parseDeviceTopic,
  parseResultsTopic,
  TOPIC_ROOT,
} from './topics.js'


describe('topic builders', () => {
  it('builds the documented topic names', () => {
    expect(TOPIC_ROOT).toBe('depinfer/v1')
    expect(deviceStatusTopic('pi-kitchen')).toBe('depinfer/v1/devices/pi-kitchen/status')
    expect(deviceHeartbeatTopic('pi-kitchen')).toBe('depinfer/v1/devices/pi-kitchen/heartbeat')
    expect(deviceJobsTopic('pi-kitchen')).toBe('depinfer/v1/devices/pi-kitchen/jobs')
    expect(gatewayResultsTopic('gw.eu_1', 'pi-kitchen')).toBe('depinfer/v1/gateways/gw.eu_1/results/pi-kitchen')
    expect(gatewayResultsFilter('gw.eu_1')).toBe('depinfer/v1/gateways/gw.eu_1/results/+')
    expect(gatewaySyncTopic('gw.eu_1')).toBe('depinfer/v1/gateways/gw.eu_1/sync')
  })

  it('subscription filters match every device status / heartbeat and nothing else', () => {
    for (const id of ['a', 'pi-kitchen', 'X.y_z-9']) {
      expect(mqttMatches(ALL_DEVICE_STATUS, deviceStatusTopic(id))).toBe(true)
      expect(mqttMatches(ALL_DEVICE_HEARTBEATS, deviceHeartbeatTopic(id))).toBe(true)
      expect(mqttMatches(ALL_DEVICE_STATUS, deviceHeartbeatTopic(id))).toBe(false)
      expect(mqttMatches(ALL_DEVICE_HEARTBEATS, deviceStatusTopic(id))).toBe(false)
      expect(mqttMatches(ALL_DEVICE_STATUS, deviceJobsTopic(id))).toBe(false)
      expect(mqttMatches(ALL_DEVICE_HEARTBEATS, deviceJobsTopic(id))).toBe(false)
      expect(mqttMatches(ALL_DEVICE_STATUS, gatewayResultsTopic(id, id))).toBe(false)
      expect(mqttMatches(gatewayResultsFilter('gw'), gatewayResultsTopic('gw', id))).toBe(true)
      expect(mqttMatches(gatewayResultsFilter('gw'), gatewayResultsTopic('other', id))).toBe(false)
    }
  })
})

describe('parseDeviceTopic', () => {
  it.each([
    [deviceStatusTopic('pi-kitchen'), 'pi-kitchen', 'status'],
    [deviceHeartbeatTopic('pi-kitchen'), 'pi-kitchen', 'heartbeat'],
    [deviceJobsTopic('jetson.01'), 'jetson.01', 'jobs'],
    ['depinfer/v1/devices/A_b-c.9/status', 'A_b-c.9', 'status'],
  ])('parses %s', (topic, deviceId, kind) => {
    expect(parseDeviceTopic(topic)).toEqual({ deviceId, kind })
  })

  it.each([
    gatewayResultsTopic('gw', 'pi'),
    gatewaySyncTopic('gw'),
    'depinfer/v1/devices/pi/other',
    'depinfer/v1/devices/pi/status/extra',
    'depinfer/v1/devices/pi/sub/status',
    'depinfer/v1/devices//status',
    'depinfer/v1/devices/status',
    'depinfer/v2/devices/pi/status',
    'x/depinfer/v1/devices/pi/status',
    '/depinfer/v1/devices/pi/status',
    'depinfer/v1/devices/pi/status/',
    'depinfer/v1/devices/pi/STATUS',
    'depinfer/v1/gateways/pi/status',
    '',
  ])('returns undefined for %j', (topic) => {
    expect(parseDeviceTopic(topic)).toBeUndefined()
  })
})

describe('parseResultsTopic / isGatewayResultsTopic', () => {
  it.each(['gw', 'edge-eu.1', 'G_9'])('reads the ids of gateway %s\'s results topic for a device', (id) => {
    expect(parseResultsTopic(gatewayResultsTopic(id, 'pi.2'))).toEqual({ gatewayId: id, deviceId: 'pi.2' })
    expect(isGatewayResultsTopic(gatewayResultsTopic(id, 'pi.2'), 'pi.2')).toBe(true)
  })

  it("is not a device's reply topic when it names another device", () => {
    expect(isGatewayResultsTopic(gatewayResultsTopic('gw', 'other'), 'pi')).toBe(false)
    expect(isGatewayResultsTopic(gatewayResultsTopic('gw', 'pi2'), 'pi')).toBe(false)
  })

  it.each([
    'depinfer/v1/gateways/gw/results',
    'depinfer/v1/gateways/+/results/pi',
    'depinfer/v1/gateways/#/results/pi',
    'depinfer/v1/gateways/gw/results/+',
    'depinfer/v1/gateways/gw/results/#',
    'depinfer/v1/gateways/.hidden/results/pi',
    'depinfer/v1/gateways/gw/results/.pi',
    'depinfer/v1/gateways//results/pi',
    'depinfer/v1/gateways/gw/results/',
    'depinfer/v1/gateways/gw/results/pi/x',
    'depinfer/v1/gateways/a/b/results/pi',
    'depinfer/v1/gateways/gw/sync',
    'depinfer/v1/devices/gw/status',
    'depinfer/v2/gateways/gw/results/pi',
    `depinfer/v1/gateways/${'a'.repeat(65)}/results/pi`,
  ])('rejects %j', (topic) => {
    expect(parseResultsTopic(topic)).toBeUndefined()
    expect(isGatewayResultsTopic(topic, 'pi')).toBe(false)
  })
})

describe('isValidId', () => {
  it.each(['a', 'pi-kitchen', 'Pi_Kitchen.2', '0', '9-._', 'a'.repeat(64)])('accepts %j', (id) => {
    expect(isValidId(id)).toBe(true)
  })

  it.each([
    ['empty', ''],
    ['a slash', 'pi/kitchen'],
    ['a plus wildcard', 'pi+kitchen'],
    ['a hash wildcard', 'pi#kitchen'],
    ['only +', '+'],
    ['only #', '#'],
    ['a leading dash', '-pi'],
    ['a leading dot', '.pi'],
    ['a leading underscore', '_pi'],
    ['a space', 'pi kitchen'],
    ['a trailing newline', 'pi\n'],
    ['a NUL', 'pi\u0000'],
    ['non-ASCII letters', 'küche'],
    ['65 characters', 'a'.repeat(65)],
    ['a colon', 'pi:1'],
  ])('rejects an id with %s', (_case, id) => {
    expect(isValidId(id)).toBe(false)
  })
})
