/**
 * The agent's MQTT connection (mqtt.js over TCP or WebSocket, MQTT 3.1.1 so any broker works).
 * Reconnects itself with jittered, capped exponential back-off so a fleet does not stampede a
 * restarted broker, and re-runs `onConnect` (status, subscriptions) after every reconnect.
 */
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import { messageOf } from '@depinfer/shared'
import { backoffMs } from '../backoff.js'
import { readBrokerTls, tlsHint, type BrokerTlsFiles } from './tls.js'

export interface BrokerConnectOptions {
  url: string
  clientId: string
  username?: string | undefined
  password?: string | undefined
  /** PEM files for mqtts:// and wss://; read now (a bad one throws ConfigError) and before every reconnect. */
  tls?: BrokerTlsFiles | undefined
  keepaliveSec: number
  will: { topic: string; payload: string }
  reconnect: { minMs: number; maxMs: number }
  onConnect: (client: MqttClient) => void
  onMessage: (topic: string, payload: Buffer) => void
  log: (message: string) => void
}

export interface ReconnectPolicyOptions {
  minMs: number
  maxMs: number
  /** How long a connection must last to count as a good one, resetting the back-off; default 2 × maxMs. */
  stableMs?: number
  /** Dropped-right-after-accepted connections in a row that make a takeover the likely cause; default 3. */
  takeoverAfter?: number
  random?: () => number
}

/**
 * When to reconnect, and when to say that another process is probably using our client id.
 *
 * A broker keeps one connection per client id and drops the older one when another connects
 * with it (MQTT 3.1.1 §3.1.4-2). Two agents with the same deviceId therefore drop each other on
 * every reconnect: each connection is accepted, then cut when the other one comes back. So the
 * back-off is reset only by a connection that lasted `stableMs`, not by every CONNACK (which
 * would keep both at `minMs` forever, hammering the broker), and `takeoverAfter` connections in a
 * row cut that soon are reported once. `stableMs` is twice the longest back-off: a duplicate
 * reconnects within `maxMs`, so a connection that outlived that was not cut by one.
 */
export class ReconnectPolicy {
  private attempt = 0
  private connectedAt: number | undefined
  /** Connections in a row that were accepted and then dropped before `stableMs`. */
  private droppedEarly = 0
  private reported = false
  private readonly stableMs: number
  private readonly takeoverAfter: number

  constructor(private readonly options: ReconnectPolicyOptions) {
    this.stableMs = options.stableMs ?? 2 * options.maxMs
    this.takeoverAfter = options.takeoverAfter ?? 3
  }

  connected(now: number): void {
    this.connectedAt = now
  }

  /**
   * The connection closed, or an attempt to connect failed: how long to wait before the next
   * attempt, and whether a takeover should be reported now (once per streak of early drops).
   */
  closed(now: number): { delayMs: number; takeoverSuspected: boolean; droppedEarly: number } {
    if (this.connectedAt === undefined) {
      // Not even accepted: the broker is unreachable or refuses us, which no other process causes.
      this.droppedEarly = 0
    } else if (now - this.connectedAt >= this.stableMs) {
      this.attempt = 0
      this.droppedEarly = 0
      this.reported = false
    } else {
      this.droppedEarly++
    }
    this.connectedAt = undefined
    const delayMs = backoffMs(this.attempt++, this.options.minMs, this.options.maxMs, this.options.random)
    const takeoverSuspected = !this.reported && this.droppedEarly >= this.takeoverAfter
    if (takeoverSuspected) this.reported = true
    return { delayMs, takeoverSuspected, droppedEarly: this.droppedEarly }
  }
}

/** CONNACK codes refusing the credentials: MQTT 3.1.1 §3.2.2.3 (4, 5), MQTT 5 §3.2.2.2 (134, 135). */
const CREDENTIALS_REFUSED = new Set([4, 5, 134, 135])

/**
 * What to check when the broker refuses the credentials (it goes on refusing them at every
 * reconnect, which says nothing of where they come from).
 */
function credentialsHint(error: Error, options: Pick<BrokerConnectOptions, 'username'>): string {
  if (!CREDENTIALS_REFUSED.has((error as { code?: unknown }).code as number)) return ''
  const given = options.username === undefined ? 'none are set' : `user name ${JSON.stringify(options.username)}`
  return ` (the broker refuses this client's credentials, ${given}: check broker.username and broker.password, or DEPINFER_BROKER_USERNAME and DEPINFER_BROKER_PASSWORD)`
}

export function connectBroker(options: BrokerConnectOptions): MqttClient {
  const tls = options.tls && readBrokerTls(options.tls)
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
    ...tls?.material,
  }
  const client = mqtt.connect(options.url, clientOptions)
  const policy = new ReconnectPolicy(options.reconnect)
  let timer: NodeJS.Timeout | undefined
  client.on('connect', () => {
    policy.connected(Date.now())
    // mqtt-packet writes a PUBLISH in several chunks; with Nagle on, the tail waits for the
    // broker's delayed ACK (~40 ms a message). TCP streams only; WebSocket streams lack it.
    ;(client.stream as { setNoDelay?: (noDelay: boolean) => void }).setNoDelay?.(true)
    options.log(`connected to ${options.url}`)
    options.onConnect(client)
  })
  client.on('message', (topic, payload) => options.onMessage(topic, payload))
  // mqtt.js passes an error of a TLS socket that has not finished its handshake on to the client
  // twice (its TLS connector and its stream handler both emit it): one line per error.
  let lastError: Error | undefined
  client.on('error', (error) => {
    if (error === lastError) return
    lastError = error
    options.log(`broker error: ${error.message}${credentialsHint(error, options)}${tlsHint(error)}`)
  })
  client.on('close', () => {
    if (client.disconnecting || timer) return
    const { delayMs, takeoverSuspected, droppedEarly } = policy.closed(Date.now())
    if (takeoverSuspected) {
      options.log(
        `WARNING: the broker accepted this connection and dropped it soon after, ${droppedEarly} times in a row: another process is probably ` +
          `connected with the same device id (MQTT client id ${options.clientId}); a broker keeps one connection per client id, so the two drop ` +
          `each other. Stop the other process or give each its own deviceId (if there is none, check the broker's ACL for this client). ` +
          `Backing off up to ${options.reconnect.maxMs} ms between attempts meanwhile`,
      )
    }
    options.log(`broker connection closed; reconnecting in ${delayMs} ms`)
    timer = setTimeout(() => {
      timer = undefined
      if (client.disconnecting) return
      if (options.tls) {
        // A renewed certificate on disk is used from the next connection on. mqtt.js builds each
        // connection's socket from client.options, the object passed to connect.
        try {
          const { material } = readBrokerTls(options.tls)
          Object.assign(client.options, material)
          // For wss:// mqtt.js copies them into wsOptions at the first connection only, and reads
          // them from there after.
          if (client.options.wsOptions) Object.assign(client.options.wsOptions, material)
        } catch (error) {
          options.log(`keeping the TLS files read before: ${messageOf(error)}`)
        }
      }
      client.reconnect()
    }, delayMs)
  })
  client.on('end', () => clearTimeout(timer))
  return client
}
