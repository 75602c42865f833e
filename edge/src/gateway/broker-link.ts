/**
 * The Gateway's one connection to the MQTT broker, made with mqtt.js from inside the Durable
 * Object. The URL scheme picks the transport:
 * - `mqtt://` / `mqtts://`: TCP (TLS) through the runtime's node:net / node:tls (nodejs_compat).
 *   The default: brokers handle large messages over TCP much faster than over WebSocket
 *   (Mosquitto's WebSocket listener took ~4 s to deliver one 1.6 MB result here).
 * - `ws://` / `wss://`: WebSocket (wrangler bundles mqtt's browser build, which uses the
 *   runtime's WebSocket), for brokers reachable only through an HTTP front.
 *
 * Protocol notes:
 * - MQTT 3.1.1 only (the embedded broker has no MQTT 5): reply topics and job ids travel inside
 *   the frames, not as MQTT 5 properties.
 * - A persistent session (clean = false, fixed client id) with QoS 1 subscriptions, so results a
 *   device publishes while the link reconnects are queued by the broker, not lost (§3.1.2.4).
 * - "Synced" means: connected, subscribed, and a marker we published to ourselves came back.
 *   Retained device statuses are delivered right after SUBACK, so by the time the marker returns
 *   the device table holds every device the broker knows.
 */
import { Buffer } from 'node:buffer'
import * as net from 'node:net'
import * as tls from 'node:tls'
// mqtt's browser build (what wrangler bundles) has only a default export.
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import {
  ALL_DEVICE_HEARTBEATS,
  ALL_DEVICE_STATUS,
  gatewayClientId,
  gatewayResultsFilter,
  gatewaySyncTopic,
} from '@depinfer/shared'
import { BrokerUnavailableError } from '../errors/routing.js'

export interface BrokerLinkOptions {
  url: string
  username: string | undefined
  password: string | undefined
  gatewayId: string
  /** How long a caller waits for a (re)connection before getting 503, in milliseconds. */
  connectTimeoutMs: number
  /**
   * Called on every (re)connection, before subscribing: what the gateway knew of devices may be
   * out of date (a device can have left while the link was down without anyone hearing of it,
   * e.g. when the broker itself restarted), and the retained statuses that follow SUBACK are
   * the broker's current view, delivered before the link counts as synced.
   */
  onConnect: () => void
  /** `retained`: delivered from the broker's store on subscribing, not as it was published. */
  onMessage: (topic: string, payload: Uint8Array, retained: boolean) => void
}

/** Keepalive interval, in seconds (MQTT §3.1.2.10). */
const KEEPALIVE_SEC = 20
const RECONNECT_PERIOD_MS = 500

export class BrokerLink {
  #client: MqttClient | undefined
  #synced = false
  #connectedAt = 0
  #lastError: unknown
  #waiters = new Set<() => void>()
  #epoch = 0
  #lastPacketAt = 0

  constructor(private readonly options: BrokerLinkOptions) {}

  get synced(): boolean {
    return this.#synced
  }

  /**
   * Counts the connections lost (or replaced): a job sent in one epoch and timed out in another
   * may have been lost with the broker, not by its device.
   */
  get epoch(): number {
    return this.#epoch
  }

  /**
   * When the current connection last received anything (a device's heartbeat, a PUBACK, a
   * PINGRESP): a broker host that vanished without closing the socket looks connected until
   * the keepalive runs out, but sends nothing.
   */
  get lastPacketAt(): number {
    return this.#lastPacketAt
  }

  /** Milliseconds since the current connection was established (0 when down). */
  connectionAgeMs(now: number): number {
    return this.#synced ? now - this.#connectedAt : 0
  }

  /** Connects lazily and resolves once synced; throws BrokerUnavailableError after the timeout. */
  async ensure(): Promise<void> {
    if (this.#synced) return
    if (!this.#client) this.#start()
    let waiter!: () => void
    let timer: ReturnType<typeof setTimeout> | undefined
    try {
      await new Promise<void>((resolve, reject) => {
        waiter = resolve
        this.#waiters.add(waiter)
        timer = setTimeout(
          () =>
            reject(
              new BrokerUnavailableError(
                `no connection to the broker at ${this.options.url} within ${this.options.connectTimeoutMs} ms${describe(this.#lastError)}`,
                this.#lastError,
              ),
            ),
          this.options.connectTimeoutMs,
        )
      })
    } finally {
      clearTimeout(timer)
      this.#waiters.delete(waiter)
    }
  }

  publish(topic: string, payload: Uint8Array, { retain = false } = {}): void {
    if (!this.#client) throw new BrokerUnavailableError('broker link not started')
    // QoS 1: the broker acknowledges; a job lost anyway ends in the job's own timeout.
    this.#client.publish(topic, toBuffer(payload), { qos: 1, retain }, (error) => {
      if (error) this.#lastError = error
    })
  }

  /** Replaces the connection (Workers cap one outbound socket's lifetime; see DESIGN). */
  renew(): void {
    this.close()
    this.#start()
  }

  close(): void {
    this.#epoch++
    this.#synced = false
    this.#client?.end(true)
    this.#client = undefined
  }

  #start(): void {
    const { url, username, password, gatewayId } = this.options
    const syncTopic = gatewaySyncTopic(gatewayId)
    const clientOptions: IClientOptions = {
      protocolVersion: 4,
      clientId: gatewayClientId(gatewayId),
      clean: false,
      keepalive: KEEPALIVE_SEC,
      reconnectPeriod: RECONNECT_PERIOD_MS,
      connectTimeout: this.options.connectTimeoutMs,
      ...(username !== undefined && { username }),
      ...(password !== undefined && { password }),
    }
    const client = connectClient(url, clientOptions)
    this.#client = client
    let syncNonce = ''
    client.on('connect', () => {
      if (client !== this.#client) return
      this.options.onConnect()
      syncNonce = crypto.randomUUID()
      // Subscribing on every connect (not only when the session is new) makes the broker resend
      // retained statuses, so the device table is rebuilt after any outage (MQTT §3.3.1.3).
      client.subscribe(
        [ALL_DEVICE_STATUS, ALL_DEVICE_HEARTBEATS, gatewayResultsFilter(gatewayId), syncTopic],
        { qos: 1 },
        (error) => {
          if (error) {
            this.#lastError = error
            return
          }
          client.publish(syncTopic, syncNonce, { qos: 1 })
        },
      )
    })
    client.on('message', (topic, payload, packet) => {
      if (client !== this.#client) return
      if (topic === syncTopic) {
        if (payload.toString() === syncNonce && !this.#synced) {
          this.#synced = true
          this.#connectedAt = Date.now()
          for (const wake of this.#waiters) wake()
        }
        return
      }
      this.options.onMessage(topic, payload, packet.retain)
    })
    client.on('packetreceive', () => {
      if (client === this.#client) this.#lastPacketAt = Date.now()
    })
    client.on('close', () => {
      if (client !== this.#client) return
      // Each drop counts once, however often mqtt.js then retries and fails to connect.
      if (this.#synced) this.#epoch++
      this.#synced = false
    })
    client.on('error', (error) => {
      this.#lastError = error
    })
  }
}

/** An mqtt.js client over the transport the URL's scheme names. */
function connectClient(url: string, options: IClientOptions): MqttClient {
  const { protocol, hostname, port } = new URL(url)
  if (protocol === 'ws:' || protocol === 'wss:') return mqtt.connect(url, options)
  const tlsOn = protocol === 'mqtts:'
  if (!tlsOn && protocol !== 'mqtt:') throw new Error(`unsupported broker URL scheme in ${url}`)
  const target = { host: hostname, port: Number(port || (tlsOn ? 8883 : 1883)) }
  // The stream builder runs again on every reconnect, each time opening a fresh socket.
  const openSocket = () => (tlsOn ? tls.connect({ ...target, servername: hostname }) : net.connect({ ...target, noDelay: true }))
  // node:net's socket is the Duplex mqtt.js wants; the typings come from different stream packages.
  return new mqtt.MqttClient(openSocket as unknown as ConstructorParameters<typeof mqtt.MqttClient>[0], options)
}

const describe = (error: unknown) => (error instanceof Error ? `: ${error.message}` : '')

/** mqtt.js wants a Buffer (its polyfill in the Worker bundle); wrap without copying. */
const toBuffer = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
