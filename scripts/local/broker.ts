/**
 * The embedded MQTT broker of the local network: aedes (MQTT 3.1.1) on TCP for agents and on
 * WebSocket for the edge's Durable Object, enforcing the protocol's topic ACL by client id.
 * Production uses Mosquitto or EMQX with TLS and the same ACL (README "Production").
 */
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http'
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net'
import type { AddressInfo } from 'node:net'
import { Aedes } from 'aedes'
import { WebSocketServer, createWebSocketStream } from 'ws'
import { MAX_MESSAGE_BYTES, mayPublish, mayRetain, maySubscribe, principalOf } from '@depinfer/shared'

export interface LocalBroker {
  tcpUrl: string
  wsUrl: string
  tcpPort: number
  wsPort: number
  close(): Promise<void>
}

export interface LocalBrokerOptions {
  host?: string
  /** 0 picks a free port. */
  tcpPort?: number
  wsPort?: number
}

export async function startLocalBroker(options: LocalBrokerOptions = {}): Promise<LocalBroker> {
  const host = options.host ?? '127.0.0.1'
  const aedes = await Aedes.createBroker({
    // A refused publish disconnects the client (aedes), as Mosquitto does past max_packet_size.
    authorizePublish: (client, packet, callback) => {
      const principal = client && principalOf(client.id)
      if (!principal || !mayPublish(principal, packet.topic)) return callback(new Error(`publish to ${packet.topic} denied`))
      if (packet.retain && !mayRetain(packet.topic)) return callback(new Error(`retained publish to ${packet.topic} denied`))
      if (packet.payload.length > MAX_MESSAGE_BYTES) return callback(new Error(`publish of ${packet.payload.length} bytes exceeds ${MAX_MESSAGE_BYTES}`))
      callback(null)
    },
    authorizeSubscribe: (client, subscription, callback) => {
      const principal = principalOf(client.id)
      // MQTT 3.1.1 §3.9.3: a refused subscription gets return code 0x80, not a disconnect.
      callback(null, principal && maySubscribe(principal, subscription.topic) ? subscription : null)
    },
  })
  const sockets = new Set<Socket>()
  const track = (socket: Socket) => {
    // Without TCP_NODELAY each small MQTT packet waits for the peer's delayed ACK (~40 ms).
    socket.setNoDelay(true)
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
  }

  // No Nagle: a job is one large MQTT write and a result a small one; batching them up in the
  // kernel only delays the answer (Mosquitto needs `set_tcp_nodelay true` for the same reason).
  const tcp: NetServer = createNetServer({ noDelay: true }, (socket) => {
    track(socket)
    aedes.handle(socket)
  })
  const http: HttpServer = createHttpServer()
  http.on('connection', track)
  const wss = new WebSocketServer({ server: http })
  wss.on('connection', (websocket, request) => aedes.handle(createWebSocketStream(websocket), request))

  const listen = (server: NetServer | HttpServer, port: number) =>
    new Promise<number>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, host, () => resolve((server.address() as AddressInfo).port))
    })
  const tcpPort = await listen(tcp, options.tcpPort ?? 0)
  const wsPort = await listen(http, options.wsPort ?? 0)

  return {
    tcpPort,
    wsPort,
    tcpUrl: `mqtt://${host}:${tcpPort}`,
    wsUrl: `ws://${host}:${wsPort}/mqtt`,
    async close() {
      for (const socket of sockets) socket.destroy()
      wss.close()
      await Promise.all([
        new Promise((resolve) => tcp.close(resolve)),
        new Promise((resolve) => http.close(resolve)),
        new Promise<void>((resolve) => aedes.close(() => resolve())),
      ])
    },
  }
}
