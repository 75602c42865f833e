/**
 * What the agent says at start (and `depinfer-agent status`) about a broker login that would
 * connect fine and still leave the device unseen: the broker takes the login, then its ACL drops
 * every message the device publishes, without a word to either side.
 */
import type { AgentConfig } from '../config.js'
import { checkBrokerTls } from './tls.js'

export function brokerWarnings(broker: AgentConfig['broker'], deviceId: string): string[] {
  const warnings = broker.tls ? checkBrokerTls(broker.tls, deviceId) : []
  if (broker.username !== undefined && broker.username !== deviceId) {
    warnings.push(
      `broker.username ${JSON.stringify(broker.username)} is not the deviceId ${JSON.stringify(deviceId)}: a broker that grants each device ` +
        `its own topics by its login (the README's Mosquitto ACL, pattern %u) drops this device's status and heartbeats, and the edge never sees it`,
    )
  }
  return warnings
}
