/**
 * MQTT topic names of the depinfer wire protocol v1, defined once.
 *
 * Everything lives under `depinfer/v1/`. Ids are single topic levels, so they must not contain
 * `/` or the MQTT wildcards `+` and `#` (MQTT 3.1.1 §4.7.1).
 *
 * @example
 * deviceJobsTopic('pi-kitchen') // 'depinfer/v1/devices/pi-kitchen/jobs'
 */
export const TOPIC_ROOT = 'depinfer/v1'

/** A device or gateway id: one topic level of safe characters, 1–64 long. */
export const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/

export type DeviceTopicKind = 'status' | 'heartbeat' | 'jobs'

export const deviceStatusTopic = (deviceId: string) => `${TOPIC_ROOT}/devices/${deviceId}/status`
export const deviceHeartbeatTopic = (deviceId: string) =>
  `${TOPIC_ROOT}/devices/${deviceId}/heartbeat`
export const deviceJobsTopic = (deviceId: string) => `${TOPIC_ROOT}/devices/${deviceId}/jobs`
export const gatewayResultsTopic = (gatewayId: string) =>
  `${TOPIC_ROOT}/gateways/${gatewayId}/results`

/** Subscriptions a gateway holds: every device's status and heartbeat. */
export const ALL_DEVICE_STATUS = `${TOPIC_ROOT}/devices/+/status`
export const ALL_DEVICE_HEARTBEATS = `${TOPIC_ROOT}/devices/+/heartbeat`

const DEVICE_TOPIC = new RegExp(`^${TOPIC_ROOT}/devices/([^/]+)/(status|heartbeat|jobs)$`)
const RESULTS_TOPIC = new RegExp(`^${TOPIC_ROOT}/gateways/([^/]+)/results$`)

/** Splits a device topic into its device id and kind, or returns undefined for other topics. */
export function parseDeviceTopic(
  topic: string,
): { deviceId: string; kind: DeviceTopicKind } | undefined {
  const match = DEVICE_TOPIC.exec(topic)
  if (!match) return undefined
  return { deviceId: match[1]!, kind: match[2] as DeviceTopicKind }
}

/** True when `topic` is some gateway's results topic: the only reply topic a device accepts. */
export function isGatewayResultsTopic(topic: string): boolean {
  const match = RESULTS_TOPIC.exec(topic)
  return match !== null && ID_PATTERN.test(match[1]!)
}

export function isValidId(id: string): boolean {
  return ID_PATTERN.test(id)
}

/** A gateway's private topic for its own sync markers (see the edge's broker link). */
export const gatewaySyncTopic = (gatewayId: string) => `${TOPIC_ROOT}/gateways/${gatewayId}/sync`
