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
/**
 * Where a device answers a gateway's jobs: one topic per device, so the broker's ACL (a device
 * may publish only to its own) tells the gateway who sent a result. MQTT carries no publisher
 * identity; a results topic shared by all devices would let any device answer, or fail, jobs
 * in another's name.
 */
export const gatewayResultsTopic = (gatewayId: string, deviceId: string) =>
  `${TOPIC_ROOT}/gateways/${gatewayId}/results/${deviceId}`
/** What a gateway subscribes to: every device's results topic for it. */
export const gatewayResultsFilter = (gatewayId: string) => `${TOPIC_ROOT}/gateways/${gatewayId}/results/+`

/** Subscriptions a gateway holds: every device's status and heartbeat. */
export const ALL_DEVICE_STATUS = `${TOPIC_ROOT}/devices/+/status`
export const ALL_DEVICE_HEARTBEATS = `${TOPIC_ROOT}/devices/+/heartbeat`

const DEVICE_TOPIC = new RegExp(`^${TOPIC_ROOT}/devices/([^/]+)/(status|heartbeat|jobs)$`)
const RESULTS_TOPIC = new RegExp(`^${TOPIC_ROOT}/gateways/([^/]+)/results/([^/]+)$`)

/** Splits a device topic into its device id and kind, or returns undefined for other topics. */
export function parseDeviceTopic(
  topic: string,
): { deviceId: string; kind: DeviceTopicKind } | undefined {
  const match = DEVICE_TOPIC.exec(topic)
  if (!match) return undefined
  return { deviceId: match[1]!, kind: match[2] as DeviceTopicKind }
}

/** The gateway and device ids of a results topic, or undefined for other topics. */
export function parseResultsTopic(topic: string): { gatewayId: string; deviceId: string } | undefined {
  const match = RESULTS_TOPIC.exec(topic)
  if (!match || !ID_PATTERN.test(match[1]!) || !ID_PATTERN.test(match[2]!)) return undefined
  return { gatewayId: match[1]!, deviceId: match[2]! }
}

/**
 * True when `topic` is some gateway's results topic for this device: the only reply topic a
 * device accepts, and the only one its ACL lets it publish to.
 */
export function isGatewayResultsTopic(topic: string, deviceId: string): boolean {
  return parseResultsTopic(topic)?.deviceId === deviceId
}

export function isValidId(id: string): boolean {
  return ID_PATTERN.test(id)
}

/** A gateway's private topic for its own sync markers (see the edge's broker link). */
export const gatewaySyncTopic = (gatewayId: string) => `${TOPIC_ROOT}/gateways/${gatewayId}/sync`
