/**
 * Who may publish and subscribe where (DESIGN "Broker ACL"). A device may publish only under its
 * own `devices/{id}/` and to its own results topic of each gateway (so a result's topic names
 * the device that sent it), and subscribe only to its own jobs; a
 * gateway may do anything under the protocol root. Brokers enforce this: the embedded one calls
 * these functions, production Mosquitto gets the equivalent ACL file (see README).
 */
import { deviceJobsTopic, isGatewayResultsTopic, isValidId, parseDeviceTopic, TOPIC_ROOT } from './topics.js'

export type BrokerPrincipal = { role: 'device'; deviceId: string } | { role: 'gateway'; gatewayId: string }

const DEVICE_CLIENT_PREFIX = 'depinfer-device-'
const GATEWAY_CLIENT_PREFIX = 'depinfer-gateway-'

export const deviceClientId = (deviceId: string) => `${DEVICE_CLIENT_PREFIX}${deviceId}`
export const gatewayClientId = (gatewayId: string) => `${GATEWAY_CLIENT_PREFIX}${gatewayId}`

/** The principal a client id names, or undefined for clients that are neither. */
export function principalOf(clientId: string): BrokerPrincipal | undefined {
  // The id must be a valid topic level: a client calling itself `depinfer-device-+` must not
  // turn "its own jobs topic" into a wildcard over every device's jobs.
  if (clientId.startsWith(DEVICE_CLIENT_PREFIX)) {
    const deviceId = clientId.slice(DEVICE_CLIENT_PREFIX.length)
    return isValidId(deviceId) ? { role: 'device', deviceId } : undefined
  }
  if (clientId.startsWith(GATEWAY_CLIENT_PREFIX)) {
    const gatewayId = clientId.slice(GATEWAY_CLIENT_PREFIX.length)
    return isValidId(gatewayId) ? { role: 'gateway', gatewayId } : undefined
  }
  return undefined
}

export function mayPublish(principal: BrokerPrincipal, topic: string): boolean {
  if (principal.role === 'gateway') return topic.startsWith(`${TOPIC_ROOT}/`)
  const own = `${TOPIC_ROOT}/devices/${principal.deviceId}/`
  return (topic.startsWith(own) && topic !== deviceJobsTopic(principal.deviceId)) || isGatewayResultsTopic(topic, principal.deviceId)
}

/**
 * Only statuses are retained (the gateway rebuilds its device table from them). A retained
 * result or job would be replayed to every new subscriber; the embedded broker refuses them,
 * and the gateway ignores a retained result from brokers that cannot (Mosquitto's ACL has no
 * retain rule).
 */
export function mayRetain(topic: string): boolean {
  return parseDeviceTopic(topic)?.kind === 'status'
}

export function maySubscribe(principal: BrokerPrincipal, topicFilter: string): boolean {
  if (principal.role === 'gateway') return topicFilter.startsWith(`${TOPIC_ROOT}/`)
  return topicFilter === deviceJobsTopic(principal.deviceId)
}
