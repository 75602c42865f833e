/**
 * The agent's MQTT connection (mqtt.js over TCP or WebSocket, MQTT 3.1.1 so any broker works).
 * Reconnects itself with jittered, capped exponential back-off so a fleet does not stampede a
 * restarted broker, and re-runs `onConnect` (status, subscriptions) after every reconnect.
 */
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'

export interface BrokerConnectOptions {
  url: string
  clientId: string
  username?: string | undefined
  password?: string | undefined
  keepaliveSec: number
  will: { topic: string; payload: string }
  reconnect: { minMs: number; maxMs: number }
  onConnect: (client: MqttClient) => void
  onMessage: (topic: string, payload: Buffer) => void
  log: (message: string) => void
}

/** Full-jitter back-off: uniform in [0, min(max, min × 2^attempt)] (AWS architecture blog). */
export function backoffMs(attempt: number, minMs: number, maxMs: number, random = Math.random): number {
  const cap = Math.min(maxMs, minMs * 2 ** attempt)
  return Math.max(minMs, Math.floor(random() * cap))
}

export function connectBroker(options: BrokerConnectOptions): MqttClient {
  const clientOptions: IClientOptions = {
    protocolVersion: 4,
    clientId: options.clientId,
    clean: true,
    keepalive: options.keepaliveSec,
    reconnectPeriod: 0, // back-off is ours, below
    connectTimeout: 10_000,
    will: { topic: options.will.topic, payload: Buffer.from(options.will.payload), qos: 1, retain: true },
    ...(options.username !== undefined && { username: options.username }),
    ...(options.password !== undefined && { password: options.password }),
  }
  const client = mqtt.connect(options.url, clientOptions)
  let failures = 0
  let timer: NodeJS.Timeout | undefined
  client.on('connect', () => {
    failures = 0
    // mqtt-packet writes a PUBLISH in several chunks; with Nagle on, the tail waits for the
    // broker's delayed ACK (~40 ms a message). TCP streams only; WebSocket streams lack it.
    ;(client.stream as { setNoDelay?: (noDelay: boolean) => void }).setNoDelay?.(true)
    options.log(`connected to ${options.url}`)
    options.onConnect(client)
  })
  client.on('message', (topic, payload) => options.onMessage(topic, payload))
  client.on('error', (error) => options.log(`broker error: ${error.message}`))
  client.on('close', () => {
    if (client.disconnecting || timer) return
    const delay = backoffMs(failures++, options.reconnect.minMs, options.reconnect.maxMs)
    options.log(`broker connection closed; reconnecting in ${delay} ms`)
    timer = setTimeout(() => {
      timer = undefined
      if (!client.disconnecting) client.reconnect()
    }, delay)
  })
  client.on('end', () => clearTimeout(timer))
  return client
}
